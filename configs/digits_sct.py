r"""sCT on the embedded digits (sCM Alg. 1), started from the digits teacher: batch 64, 4000 steps.

Run: python launch.py --config=configs/digits_sct.py --workdir=runs/digits/sct \
         --config.objective.teacher_workdir=runs/digits/edm
4000 steps not yet measured. At 1000 steps (lr decay and tangent warm-up scaled): one-step
Frechet 3.258 (7.22x the teacher's), two-step 2.826, one training run on a loaded 2-core CPU
(docs/results.md#scm). At 2000 steps: 2.279 (5.05x), two-step 1.874.
"""

from configs.digits import base_config
from configs.recipes import scm_objective


def get_config():
    c = base_config()
    scm_objective(c, "sct")
    c.objective.tangent_warmup_steps = 1000
    c.optim.lr = 5e-4
    c.optim.decay_steps = 4000  # cosine decay of the lr to 0 over the run
    c.train.num_steps = 4000
    c.train.ema_rate = 0.998
    return c
