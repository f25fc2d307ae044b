"""Class-conditional EDM teacher in the latent space of the digits autoencoder, with label
dropout for classifier-free guidance: digits_edm_cond.py on the 4x4x2 latents.

Run: python launch.py --config=configs/digits_autoencoder.py --workdir=runs/digits/autoencoder
     python launch.py --config=configs/digits_latent_edm_cond.py --workdir=runs/digits/latent_edm_cond
Samples (w = 1, 2, 4) are decoded to 8x8 images before they are saved and evaluated; the eval's
class accuracy is the digits classifier's on the decoded images. Result: docs/results.md#latent.
"""

from configs import digits_edm_cond
from configs.digits import latent


def get_config():
    return latent(digits_edm_cond.get_config())
