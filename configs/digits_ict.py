"""iCT on the embedded digits: pseudo-Huber, iCT weighting, lognormal index, N 10 -> 1280."""

from configs.digits import base_config


def get_config():
    c = base_config()
    c.objective.name = "ict"
    c.objective.distance = "pseudo_huber"
    c.objective.weighting = "ict"
    c.objective.p_mean = -1.1
    c.objective.p_std = 2.0
    c.objective.s0 = 10
    c.objective.s1 = 1280
    c.optim.name = "radam"
    c.optim.lr = 1e-3
    c.train.num_steps = 4000
    c.train.ema_rate = 0.998
    c.sample.multistep_sigmas = (0.821,)
    return c
