r"""sCD of the digits teacher (sCM Alg. 1): dx_t/dt from the EDM teacher converted to TrigFlow.

Run: python launch.py --config=configs/digits_scd.py --workdir=runs/digits/scd \
         --config.objective.teacher_workdir=runs/digits/edm
Batch 64, 4000 steps (CD's budget); not yet measured at 4000. At 1000 steps (lr decay and tangent
warm-up scaled): one-step Frechet 2.478 (5.49x the teacher's), two-step 1.574, one training run
on a loaded 2-core CPU (docs/results.md#scm). At 2000 steps: 1.467 (3.25x), two-step 1.083.
"""

from configs.digits import base_config
from configs.recipes import scm_objective


def get_config():
    c = base_config()
    scm_objective(c, "scd")
    c.objective.tangent_warmup_steps = 1000
    c.optim.lr = 5e-4
    c.optim.decay_steps = 4000  # cosine decay of the lr to 0 over the run
    c.train.num_steps = 4000
    c.train.ema_rate = 0.998
    return c
