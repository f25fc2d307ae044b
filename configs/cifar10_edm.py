"""EDM teacher on CIFAR-10: NCSN++ (56.4M), the CM paper's teacher settings.

Run: python launch.py --config=configs/cifar10_edm.py --workdir=runs/cifar10_edm
Not yet run here; the CM paper's teacher: FID 2.04 at 35 NFE.
"""

from configs.cifar10 import base_config


def get_config():
    c = base_config()
    c.network.dropout = 0.13
    c.objective.name = "edm"
    c.objective.p_mean = -1.2
    c.objective.p_std = 1.2
    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 19_531  # 10 Mimg at batch 512
    c.train.num_steps = 400_000
    c.train.ema_rate = 0.99929  # half-life 0.5 Mimg at batch 512
    c.sample.teacher_steps = 18  # 35 evaluations
    return c
