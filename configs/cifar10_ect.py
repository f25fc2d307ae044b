"""Easy consistency tuning on CIFAR-10 (ECT at 200k steps of batch 128: FID 3.86 / 2.15).

Started from the EDM teacher of configs/cifar10_edm.py (ECT starts from EDM's DDPM++ VP
checkpoint; this project's teacher is NCSN++): iCT's pseudo-Huber and lambda = 1/(t - r) on
continuous pairs, ln t ~ N(-1.1, 2.0), r = t (1 - 2^-(s+1) (1 + 8 sigmoid(-t))) with the stage s
advancing every 25k steps, target = sg(online), dropout 0.2, RAdam 1e-4, batch 128, EMA 0.9999;
2-step through sigma 0.821.
"""

from configs.cifar10 import base_config
from configs.recipes import ect_objective


def get_config():
    c = base_config()
    c.data.batch_size = 128
    c.network.dropout = 0.2
    ect_objective(c)
    c.objective.teacher_workdir = "runs/cifar10_edm"
    c.objective.ect_stage_steps = 25_000
    c.optim.lr = 1e-4
    c.train.num_steps = 200_000
    c.train.ema_rate = 0.9999
    c.sample.multistep_sigmas = (0.821,)
    return c
