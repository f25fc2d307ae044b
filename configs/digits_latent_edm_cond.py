"""Class-conditional EDM teacher in the latent space of the digits autoencoder, with label
dropout for classifier-free guidance: digits_edm_cond.py on the 4x4x2 latents.

Run: python launch.py --config=configs/digits_autoencoder.py --workdir=runs/digits/autoencoder
     python launch.py --config=configs/digits_latent_edm_cond.py --workdir=runs/digits/latent_edm_cond
Samples (w = 1, 2, 4) are decoded to 8x8 images before they are saved and evaluated; the eval's
class accuracy is the digits classifier's on the decoded images. 3000 steps as digits_edm.py.
Result, one run cut to 1000 steps (6 min 22 s on a shared 2-core CPU), 2000 eval samples:
Frechet 2.68 / 9.22 / 39.2 and class accuracy 0.919 / 0.9985 / 0.9995 at w = 1 / 2 / 4 (the
pixel teacher's 1000-step run: 0.606 / 6.54 / 23.1), docs/results.md#latent.
"""

from configs import digits_edm_cond
from configs.digits import latent


def get_config():
    return latent(digits_edm_cond.get_config())
