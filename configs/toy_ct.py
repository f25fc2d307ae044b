"""Original consistency training on the 2-D mixture: adaptive N(k) and mu(k), l2, RAdam."""

from configs import default


def get_config():
    c = default.get_config()
    c.data.name = "gmm2d"
    c.objective.name = "ct"
    c.objective.distance = "l2"
    c.objective.s0 = 2
    c.objective.s1 = 150
    c.objective.mu0 = 0.9
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
