"""ECT on the embedded digits: consistency training started from the digits teacher.

iCT's pseudo-Huber and weighting on continuous pairs (t, r), r = t (1 - 2^-(s+1) n(t)) with the
stage s advancing every 250 steps (r/t from 0.5 to 0.996 far from 0 over the 2000 steps), RAdam
1e-3 decayed to 0 by a cosine. Measured on this data (one-step Frechet distance, 10,000 samples,
every 250th checkpoint scored by `launch.py --mode=eval --eval_steps=all`; the teacher scores
0.45 there): this config 2.39 at step 2000; one stage of q = 256 (ECT's one-hour CIFAR-10 run)
3.3-4.0 from step 1500; q = 2 every 500 steps 6.25; q = 4 every 500 steps 2.68. iCT's discrete
curriculum (N 10 -> 1280) started from the same teacher: 1.97 after 2000 steps at a constant lr,
1.60 after 4000 with the lr decayed over them (`configs/digits_ict.py` with
objective.teacher_workdir set). At batch 256 (4x the examples; the batch that put iCT within 3x)
this config scored 2.08 at step 2000.
"""

from configs.digits import base_config
from configs.recipes import ect_objective


def get_config():
    c = base_config()
    ect_objective(c)
    c.objective.teacher_workdir = "runs/digits/edm"
    c.objective.ect_stage_steps = 250
    c.optim.lr = 1e-3
    c.optim.decay_steps = 2000  # cosine decay of the lr to 0 over the run
    c.train.num_steps = 2000
    c.train.ema_rate = 0.998
    c.sample.multistep_sigmas = (0.821,)
    return c
