r"""sCT on the embedded digits (sCM Alg. 1), started from the digits teacher: batch 64, 4000 steps,
dropout 0.2 (the paper's CIFAR-10 sCT value).

Run: python launch.py --config=configs/digits_sct.py --workdir=runs/digits/sct \
         --config.objective.teacher_workdir=runs/digits/edm
Over training seeds 0-2: one-step Frechet 1.534 [1.424, 1.695] (3.40x the teacher's), two-step
1.218; without dropout 2.019 [1.828, 2.204] (4.47x), and 1.923 (4.26x, one run) at iCT's budget
(batch 256, 5000 steps): docs/results.md#scm.
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
    c.network.dropout = 0.2
    return c
