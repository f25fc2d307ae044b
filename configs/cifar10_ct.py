"""Original consistency training on CIFAR-10 (CM paper CT-LPIPS): s0 2, s1 150, mu0 0.9, LPIPS.

Run: python launch.py --config=configs/cifar10_ct.py --workdir=runs/cifar10_ct
Not yet run here; the paper's FID, as quoted in later papers: 8.70 in one step, 5.83 in two.
"""

from configs.cifar10 import base_config


def get_config():
    c = base_config()
    c.objective.name = "ct"
    c.objective.distance = "lpips"
    c.objective.s0 = 2
    c.objective.s1 = 150
    c.objective.mu0 = 0.9
    c.optim.name = "radam"
    c.optim.lr = 4e-4
    c.train.num_steps = 800_000
    c.train.ema_rate = 0.9999
    c.sample.multistep_sigmas = (0.821,)
    return c
