"""EDM teacher on the 2-D Gaussian mixture (trains in about a minute on 2 CPU cores)."""

from configs import default


def get_config():
    c = default.get_config()
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
