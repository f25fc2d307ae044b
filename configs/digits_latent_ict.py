"""iCT in the latent space of the digits autoencoder, as digits_ict.py.

Run: python launch.py --config=configs/digits_latent_ict.py --workdir=runs/digits/latent_ict
5000 steps: 60 min on a shared 2-core CPU (28 min CPU). Result: one-step Frechet 2.093 (1.41x the
latent teacher's), two-step 1.717, docs/results.md#latent.
"""

from configs import digits_ict
from configs.digits import latent


def get_config():
    return latent(digits_ict.get_config())
