r"""ECT on the 2-D mixture: consistency training started from the toy teacher.

Run: python launch.py --config=configs/toy_ect.py --workdir=runs/toy/ect \
         --config.objective.teacher_workdir=runs/toy/edm
3000 steps, r/t from 0.5 to 0.996 (far from 0) in 8 stages. Result: sliced W2 to the data 0.0512
in one step, 0.0351 in two (noise floor 0.0240) in the toy pipeline's table (docs/results.md).
"""

from configs.recipes import ect_objective
from consistency_jax.config import schema


def get_config():
    c = schema.get_config()
    c.data.name = "gmm2d"
    ect_objective(c)
    c.objective.ect_stage_steps = 375
    c.optim.lr = 1e-3
    c.optim.decay_steps = 3000  # cosine decay of the lr to 0 over the run
    c.train.num_steps = 3000
    c.train.ema_rate = 0.999
    c.train.log_every = 500
    c.train.ckpt_every = 1500
    c.sample.multistep_sigmas = (0.1,)
    c.sample.num_samples = 10_000
    c.sample.batch_size = 5_000
    return c
