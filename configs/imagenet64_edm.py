"""EDM teacher on class-conditional ImageNet-64: ADM (295.90M), EDM's ImageNet-64 recipe.

Run: python launch.py --config=configs/imagenet64_edm.py --workdir=runs/imagenet64_edm
EDM's run: --cond=1 --arch=adm --batch=4096 --lr=1e-4 --ema=50 --dropout=0.10 --augment=0
--fp16=1, 2500 Mimg. Not run here; EDM's FID: 1.36 with its stochastic sampler (256 steps,
S_churn 40, 511 NFE), the sampler set here.
"""

from configs.imagenet64 import base_config


def get_config():
    c = base_config()
    c.data.batch_size = 4096
    c.network.dropout = 0.10
    c.objective.name = "edm"
    c.objective.p_mean = -1.2
    c.objective.p_std = 1.2
    c.optim.name = "adam"
    c.optim.lr = 1e-4
    c.optim.warmup_steps = 2441  # EDM lr_rampup: 10 Mimg at batch 4096
    c.train.num_steps = 610_352  # 2500 Mimg at batch 4096
    c.train.ema_rate = 0.9999432  # EDM --ema=50: half-life 50 Mimg at batch 4096
    c.sample.teacher_solver = "stochastic"  # EDM Alg. 2 with EDM's ImageNet-64 settings
    c.sample.teacher_steps = 256
    c.sample.s_churn, c.sample.s_min, c.sample.s_max, c.sample.s_noise = 40.0, 0.05, 50.0, 1.003
    return c
