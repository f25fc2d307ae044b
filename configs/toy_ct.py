"""Original consistency training on the 2-D mixture: adaptive N(k) and mu(k), l2, RAdam.

The curriculum is shortened for a 6000-step run: s1 = 40 and mu0 = 0.5 (the paper's 150 and
0.9 are for 800k steps; here they give a collapsed model, sliced W2 0.40 vs 0.085).
"""

from configs import default


def get_config():
    c = default.get_config()
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
