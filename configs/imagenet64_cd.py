"""Consistency distillation on class-conditional ImageNet-64, the CM paper's CD-LPIPS settings
(openai/consistency_models scripts/launch.sh): N = 40, Heun, LPIPS, target EMA mu = 0.95,
RAdam at lr 8e-6, batch 2048, 600k steps, student started from the teacher, no dropout.

Run: python launch.py --config=configs/imagenet64_cd.py --workdir=runs/imagenet64_cd \
    --config.objective.teacher_workdir=runs/imagenet64_edm   (required: the trained teacher)
The CM code runs its teacher with dropout 0.1 in the Heun step; this teacher step is
deterministic (dropout off), as in the CIFAR-10 CD of JCM. Not run here; the paper's FID:
6.20 in one step, 4.70 in two (the ts 0, 22, 39 of its 40-point grid: sigma 1.382).
"""

from configs.imagenet64 import base_config


def get_config():
    c = base_config()
    c.data.batch_size = 2048
    c.network.dropout = 0.0
    c.objective.name = "cd"
    c.objective.num_scales = 40
    c.objective.solver = "heun"
    c.objective.distance = "lpips"
    c.objective.target_ema = 0.95
    c.objective.init_from_teacher = True
    c.optim.name = "radam"
    c.optim.lr = 8e-6
    c.train.num_steps = 600_000
    c.train.ema_rate = 0.9999432  # the last of CM's three sampling EMAs (0.999, 0.9999, 0.9999432)
    c.sample.multistep_sigmas = (1.382,)  # grid index 22 of 40
    return c
