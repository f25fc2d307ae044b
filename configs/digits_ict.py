"""iCT on the embedded digits: pseudo-Huber, iCT weighting, lognormal index, N 10 -> 1280."""

from configs.digits import base_config
from configs.recipes import ict_objective


def get_config():
    c = base_config()
    ict_objective(c)
    c.optim.lr = 1e-3
    c.train.num_steps = 5000  # trains beside the teacher and CD (pipeline.py --concurrent)
    c.train.ema_rate = 0.998
    c.sample.multistep_sigmas = (0.821,)
    return c
