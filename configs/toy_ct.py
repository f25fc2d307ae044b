"""Original consistency training on the 2-D mixture: adaptive N(k) and mu(k), l2, RAdam.

Run: python launch.py --config=configs/toy_ct.py --workdir=runs/toy/ct
6000 steps, with the curriculum shortened to s1 = 40 and mu0 = 0.5 (why: docs/results.md).
Result: sliced W2 to the data 0.0838 in one step, 0.0653 in two (noise floor 0.0240) in the toy
pipeline's table.
"""

from consistency_jax.config import schema


def get_config():
    c = schema.get_config()
    c.data.name = "gmm2d"
    c.objective.name = "ct"
    c.objective.distance = "l2"
    c.objective.s0 = 2
    c.objective.s1 = 40
    c.objective.mu0 = 0.5
    c.optim.name = "radam"
    c.optim.lr = 1e-3
    c.train.num_steps = 6000
    c.train.ema_rate = 0.999
    c.train.log_every = 500
    c.train.ckpt_every = 3000
    c.sample.multistep_sigmas = (0.1,)
    c.sample.num_samples = 10_000
    c.sample.batch_size = 5_000
    return c
