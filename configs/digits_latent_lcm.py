r"""LCM-style guided CD of the conditional latent digits teacher (digits_latent_edm_cond.py):
digits_lcm.py in the digits autoencoder's latents, the setting of Latent Consistency Models.

Run: python launch.py --config=configs/digits_latent_lcm.py --workdir=runs/digits/latent_lcm \
         --config.objective.teacher_workdir=runs/digits/latent_edm_cond
Samples at 1, 2, 4 steps for w = 1, 2, 4, decoded to 8x8 images; 4000 steps as digits_lcm.py.
Result, one run cut to 1000 steps (8 min 50 s on a shared 2-core CPU), 2000 eval samples, w = 2:
Frechet 17.1 / 15.3 / 15.2 at 1 / 2 / 4 steps (1.86x / 1.66x / 1.65x the latent teacher's at
w = 2), class accuracy 1.000; like the pixel student it barely follows w, docs/results.md#latent.
"""

from configs import digits_lcm
from configs.digits import latent


def get_config():
    c = latent(digits_lcm.get_config())
    c.objective.teacher_workdir = "runs/digits/latent_edm_cond"
    return c
