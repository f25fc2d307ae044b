r"""sCD of the digits teacher (sCM Alg. 1): dx_t/dt from the EDM teacher converted to TrigFlow.

Run: python launch.py --config=configs/digits_scd.py --workdir=runs/digits/scd \
         --config.objective.teacher_workdir=runs/digits/edm
Batch 64, 4000 steps (CD's budget). Over training seeds 0-2 (pipeline.py --seeds=0,1,2): one-step
Frechet 1.017 [0.947, 1.128] (2.25x the teacher's), two-step 0.902; at 1000 and 2000 steps
(one run each) 5.49x and 3.25x (docs/results.md#scm). CD's recipe on a grid of N = 40 or 100
scores as this does; CD's edge here is its coarse N = 13 grid
(docs/results.md#why-scd-trails-cd-here-cds-coarse-grid). iCT's budget (5000 steps at batch 256)
did not lower the one step (docs/results.md#scd-at-icts-budget), nor did dropout 0.1-0.5
(docs/results.md#scd-with-dropout). Evaluated from sigma 20 instead of 80
(--config.model.sigma_max=20 --mode=eval) the one step is lower
(docs/results.md#scd-tangent-constant-adaptive-weighting-a-wider-network-the-start-of-the-one-step).
"""

from configs.digits import base_config
from configs.recipes import scm_objective


def get_config():
    c = base_config()
    scm_objective(c, "scd")
    c.objective.tangent_warmup_steps = 1000
    c.optim.lr = 5e-4
    c.optim.decay_steps = 4000  # cosine decay of the lr to 0 over the run
    c.train.num_steps = 4000
    c.train.ema_rate = 0.998
    return c
