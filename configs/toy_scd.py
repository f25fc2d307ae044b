r"""sCD of the toy EDM teacher (sCM Alg. 1): dx_t/dt from the teacher converted to TrigFlow.

Run: python launch.py --config=configs/toy_scd.py --workdir=runs/toy/scd \
         --config.objective.teacher_workdir=runs/toy/edm
3000 steps. Result: sliced W2 to the data 0.0775 in one step, 0.0709 in two (noise floor 0.0240),
one run (over training seeds 0-2: 0.0784 [0.0724, 0.0852] in one step); the variants tried:
docs/results.md#every-objective-continuous-time-and-meanflow-included.
"""

from configs.recipes import scm_objective
from consistency_jax.config import schema


def get_config():
    c = schema.get_config()
    c.data.name = "gmm2d"
    scm_objective(c, "scd")
    c.objective.tangent_warmup_steps = 1000
    c.optim.lr = 4e-4
    c.train.num_steps = 3000
    c.train.ema_rate = 0.999
    c.train.log_every = 500
    c.train.ckpt_every = 1500
    c.sample.num_samples = 10_000
    c.sample.batch_size = 5_000
    return c
