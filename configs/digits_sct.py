r"""sCT on the embedded digits (sCM Alg. 1), started from the digits teacher: batch 64, 4000 steps.

Run: python launch.py --config=configs/digits_sct.py --workdir=runs/digits/sct \
         --config.objective.teacher_workdir=runs/digits/edm
Over training seeds 0-2 (pipeline.py --seeds=0,1,2): one-step Frechet 2.019 [1.828, 2.204]
(4.47x the teacher's), two-step 1.771; at 1000 and 2000 steps (one run each) 7.22x and 5.05x;
at iCT's budget (batch 256, 5000 steps; one run) 1.923 (4.26x): docs/results.md#scm.
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
