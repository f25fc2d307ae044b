"""CD of the toy EDM teacher (configs/toy_edm.py): N = 18, Heun teacher step, l2, RAdam, mu = 0."""

from configs import default


def get_config():
    c = default.get_config()
    c.data.name = "gmm2d"
    c.objective.name = "cd"
    c.objective.num_scales = 18
    c.objective.solver = "heun"
    c.objective.distance = "l2"
    c.objective.target_ema = 0.0  # the CIFAR-10 setting of the CM code: target = sg(online)
    c.objective.teacher_workdir = "runs/toy/edm"
    c.objective.init_from_teacher = True
    c.optim.name = "radam"
    c.optim.lr = 4e-4
    c.train.num_steps = 3000
    c.train.ema_rate = 0.999
    c.train.log_every = 500
    c.train.ckpt_every = 1500
    return c
