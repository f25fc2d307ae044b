"""EDM teacher on the 2-D Gaussian mixture (trains in about a minute on 2 CPU cores).

Run: python launch.py --config=configs/toy_edm.py --workdir=runs/toy/edm
Result: sliced W2 to the data 0.0170 with the 35-evaluation Heun sampler (noise floor 0.0240) in
the toy pipeline's table (docs/results.md).
"""

from consistency_jax.config import schema


def get_config():
    c = schema.get_config()
    c.data.name = "gmm2d"
    c.objective.name = "edm"
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 200
    c.train.num_steps = 4000
    c.train.ema_rate = 0.999
    c.train.log_every = 500
    c.train.ckpt_every = 2000
    c.sample.num_samples = 10_000
    c.sample.batch_size = 5_000
    return c
