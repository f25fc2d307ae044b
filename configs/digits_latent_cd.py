r"""CD of the latent digits teacher (digits_latent_edm.py), as digits_cd.py, in the autoencoder's latents.

Run: python launch.py --config=configs/digits_latent_cd.py --workdir=runs/digits/latent_cd \
         --config.objective.teacher_workdir=runs/digits/latent_edm
4000 steps: 19 min on a shared 2-core CPU (10 min CPU). Result: one-step Frechet 3.508 (2.37x the
latent teacher's), two-step 2.724, docs/results.md#latent.
"""

from configs import digits_cd
from configs.digits import latent


def get_config():
    return latent(digits_cd.get_config())
