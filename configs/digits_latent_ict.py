"""iCT in the latent space of the digits autoencoder, as digits_ict.py.

Run: python launch.py --config=configs/digits_latent_ict.py --workdir=runs/digits/latent_ict
Result: docs/results.md#latent.
"""

from configs import digits_ict
from configs.digits import latent


def get_config():
    return latent(digits_ict.get_config())
