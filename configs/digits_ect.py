r"""ECT on the embedded digits: consistency training started from the digits teacher.

Run: python launch.py --config=configs/digits_ect.py --workdir=runs/digits/ect \
         --config.objective.teacher_workdir=runs/digits/edm
2000 steps: trained and scored in 1 min 28 s on a 2-core CPU in pipeline.py. Result: one-step
Frechet 2.389, two-step 1.930 in the pipeline's table (seed 0); over training seeds 0-2 3.161
[2.389, 3.674] (7.01x the teacher's), two-step 2.441; the variants measured: docs/results.md.
"""

from configs.digits import base_config
from configs.recipes import ect_objective


def get_config():
    c = base_config()
    ect_objective(c)
    c.objective.ect_stage_steps = 250
    c.optim.lr = 1e-3
    c.optim.decay_steps = 2000  # cosine decay of the lr to 0 over the run
    c.train.num_steps = 2000
    c.train.ema_rate = 0.998
    c.sample.multistep_sigmas = (0.821,)
    return c
