r"""LCM-style guided CD of the conditional digits teacher: w ~ U[1, 4] per example, the
student takes w (a w-embedding), skipping step k = 2 on a 25-point grid, target EMA 0.95.

Run: python launch.py --config=configs/digits_lcm.py --workdir=runs/digits/lcm \
         --config.objective.teacher_workdir=runs/digits/edm_cond
4000 steps as digits_cd.py; samples at 1, 2, 4 steps for w = 1, 2, 4. Result, one run cut to
1000 steps, 2000 eval samples, w = 2: Frechet 8.79 / 6.87 / 6.45 at 1 / 2 / 4 steps (1.34x / 1.05x
/ 0.99x the teacher's at w = 2), class accuracy 1.000 / 1.000 / 0.9995; the student barely follows w
(Frechet 6.2-9.4 over w = 1-4, the teacher's 0.61-23), docs/results.md#guidance.
"""

from configs.digits import base_config


def get_config():
    c = base_config()
    c.data.conditional = True
    c.network.guidance_embedding = True
    c.objective.name = "lcm"
    c.objective.guidance_min = 1.0  # LCM's U[5, 15] is w in [6, 16] here (its w is ours - 1)
    c.objective.guidance_max = 4.0
    c.objective.num_scales = 25
    c.objective.skip = 2  # the teacher's Heun step spans two intervals: CD's 13-point grid
    c.objective.solver = "heun"
    c.objective.distance = "pseudo_huber"
    c.objective.weighting = "ict"
    c.objective.target_ema = 0.95  # LCM's target EMA
    c.objective.teacher_workdir = "runs/digits/edm_cond"
    c.objective.init_from_teacher = True
    c.optim.name = "radam"
    c.optim.lr = 1e-3
    c.optim.decay_steps = 4000
    c.train.num_steps = 4000
    c.train.ema_rate = 0.998
    c.sample.lcm_steps = (1, 2, 4)
    c.sample.guidance = (1.0, 2.0, 4.0)
    return c
