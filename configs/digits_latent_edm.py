"""EDM teacher in the latent space of the digits autoencoder (4x4x2 latents), as digits_edm.py.

Run: python launch.py --config=configs/digits_autoencoder.py --workdir=runs/digits/autoencoder
     python launch.py --config=configs/digits_latent_edm.py --workdir=runs/digits/latent_edm
Samples are decoded to 8x8 images before they are saved and evaluated. 3000 steps: 18 min on a
shared 2-core CPU (6 min CPU). Result: Frechet 1.483 (pixel teacher 0.451), docs/results.md#latent.
"""

from configs import digits_edm
from configs.digits import latent


def get_config():
    return latent(digits_edm.get_config())
