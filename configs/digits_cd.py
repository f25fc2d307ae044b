r"""CD of the digits teacher: Heun teacher step, pseudo-Huber with iCT's weighting, RAdam, mu = 0.

Run: python launch.py --config=configs/digits_cd.py --workdir=runs/digits/cd \
         --config.objective.teacher_workdir=runs/digits/edm
4000 steps: 4 min 29 s on a 2-core CPU in pipeline.py. Result: one-step Frechet 0.632 (1.40x the
teacher's), two-step 0.546 in the pipeline's table (seed 0); over training seeds 0-2 0.675
[0.632, 0.735] (1.50x), two-step 0.611; the variants measured: docs/results.md.
"""

from configs.digits import base_config


def get_config():
    c = base_config()
    c.objective.name = "cd"
    c.objective.num_scales = 13
    c.objective.solver = "heun"
    c.objective.distance = "pseudo_huber"
    c.objective.weighting = "ict"
    c.objective.target_ema = 0.0
    c.objective.init_from_teacher = True
    c.optim.name = "radam"
    c.optim.lr = 1e-3
    c.optim.decay_steps = 4000  # cosine decay of the lr to 0 over the run
    c.train.num_steps = 4000
    c.train.ema_rate = 0.998
    c.sample.multistep_sigmas = (0.5853,)
    return c
