"""EDM teacher on the embedded 8x8 digits (minutes on 2 CPU cores)."""

from configs.digits import base_config


def get_config():
    c = base_config()
    c.objective.name = "edm"
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 200
    c.train.num_steps = 3000
    c.train.ema_rate = 0.998
    return c
