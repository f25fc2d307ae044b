r"""CD of the toy EDM teacher (configs/toy_edm.py): N = 18, Heun teacher step, l2, RAdam, mu = 0.95.

Run: python launch.py --config=configs/toy_cd.py --workdir=runs/toy/cd \
         --config.objective.teacher_workdir=runs/toy/edm
3000 steps. Result: sliced W2 to the data 0.0239 in one step, 0.0234 in two (noise floor 0.0240)
in the toy pipeline's table (docs/results.md).
"""

from consistency_jax.config import schema


def get_config():
    c = schema.get_config()
    c.data.name = "gmm2d"
    c.objective.name = "cd"
    c.objective.num_scales = 18
    c.objective.solver = "heun"
    c.objective.distance = "l2"
    c.objective.target_ema = 0.95  # as the CM code on ImageNet-64 (on this data: 1-step SW 0.024 vs 0.042 at mu = 0)
    c.objective.init_from_teacher = True
    c.optim.name = "radam"
    c.optim.lr = 4e-4
    c.train.num_steps = 3000
    c.train.ema_rate = 0.999
    c.train.log_every = 500
    c.train.ckpt_every = 1500
    c.sample.num_samples = 10_000
    c.sample.batch_size = 5_000
    c.sample.multistep_sigmas = (0.1,)  # about the width of one mode of the mixture
    return c
