r"""sCD of the digits teacher (sCM Alg. 1): dx_t/dt from the EDM teacher converted to TrigFlow.

Run: python launch.py --config=configs/digits_scd.py --workdir=runs/digits/scd \
         --config.objective.teacher_workdir=runs/digits/edm
Batch 64, 4000 steps (CD's budget). The one step starts at sigma 20, not sCM's 80: the training
times put 0.2% of draws above sigma 20, and over training seeds 0-2 the one step from 20 was lower
for every seed (0.950 [0.879, 1.053], 2.11x the teacher's, against 1.023 [0.955, 1.132], 2.27x, from
80; docs/results.md#scd-tangent-constant-adaptive-weighting-a-wider-network-the-start-of-the-one-step);
sCD's loss never reads sigma_max, so it sets the samplers' start alone. At 1000 and 2000 steps
(one run each, from 80) 5.49x and 3.25x (docs/results.md#scm). CD's recipe on a grid of N = 40 or
100 scores as this does; CD's edge here is its coarse N = 13 grid
(docs/results.md#why-scd-trails-cd-here-cds-coarse-grid). iCT's budget (5000 steps at batch 256)
lowers the one step from 20 (1.91x), not from 80 (docs/results.md#scd-at-icts-budget); dropout 0.1-0.5
(docs/results.md#scd-with-dropout) and more training draws at large t
(docs/results.md#scd-more-training-draws-at-large-t-and-more-steps) did not. rCM's DMD term does
(configs/digits_scd_dmd.py: 1.23x over seeds 0-2).
"""

from configs.digits import base_config
from configs.recipes import scm_objective


def get_config():
    c = base_config()
    scm_objective(c, "scd")
    c.model.sigma_max = 20.0  # the samplers' start, t_max = arctan(20 / sigma_d) (sCM: 80)
    c.objective.tangent_warmup_steps = 1000
    c.optim.lr = 5e-4
    c.optim.decay_steps = 4000  # cosine decay of the lr to 0 over the run
    c.train.num_steps = 4000
    c.train.ema_rate = 0.998
    return c
