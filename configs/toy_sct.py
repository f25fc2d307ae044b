r"""sCT on the 2-D mixture (sCM Alg. 1): dx_t/dt from the data, started from the toy EDM teacher.

Run: python launch.py --config=configs/toy_sct.py --workdir=runs/toy/sct \
         --config.objective.teacher_workdir=runs/toy/edm
3000 steps. Result: sliced W2 to the data 0.0488 in one step, 0.0448 in two (noise floor 0.0240),
one run; over training seeds 0-2 0.0539 [0.0488, 0.0588] in one step
(docs/results.md#every-objective-continuous-time-and-meanflow-included).
"""

from configs.recipes import scm_objective
from consistency_jax.config import schema


def get_config():
    c = schema.get_config()
    c.data.name = "gmm2d"
    scm_objective(c, "sct")
    c.objective.tangent_warmup_steps = 1000
    c.optim.lr = 4e-4
    c.train.num_steps = 3000
    c.train.ema_rate = 0.999
    c.train.log_every = 500
    c.train.ckpt_every = 1500
    c.sample.num_samples = 10_000
    c.sample.batch_size = 5_000
    return c
