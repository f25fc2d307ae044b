"""CD of the digits teacher: N = 18, Heun, l2, RAdam, mu = 0, student initialised from the teacher."""

from configs.digits import base_config


def get_config():
    c = base_config()
    c.objective.name = "cd"
    c.objective.num_scales = 18
    c.objective.solver = "heun"
    c.objective.distance = "l2"
    c.objective.target_ema = 0.0
    c.objective.teacher_workdir = "runs/digits/edm"
    c.objective.init_from_teacher = True
    c.optim.name = "radam"
    c.optim.lr = 4e-4
    c.train.num_steps = 1500
    c.train.ema_rate = 0.998
    c.sample.multistep_sigmas = (0.5853,)
    return c
