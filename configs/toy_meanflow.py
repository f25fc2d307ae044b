"""MeanFlow on the 2-D mixture from data alone: the average velocity, one step z_0 = e - u(e, 1, 0).

Run: python launch.py --config=configs/toy_meanflow.py --workdir=runs/toy/meanflow
6000 steps. Result: sliced W2 to the data 0.0604 in one step, 0.0441 in two (noise floor 0.0240),
one run (docs/results.md#every-objective-continuous-time-and-meanflow-included).
"""

from configs.recipes import meanflow_objective
from consistency_jax.config import schema


def get_config():
    c = schema.get_config()
    c.data.name = "gmm2d"
    meanflow_objective(c)
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.num_steps = 6000
    c.train.ema_rate = 0.999
    c.train.log_every = 500
    c.train.ckpt_every = 3000
    c.sample.num_samples = 10_000
    c.sample.batch_size = 5_000
    return c
