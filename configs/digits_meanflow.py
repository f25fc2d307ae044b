"""MeanFlow on the embedded digits from data alone: batch 256, 5000 steps (iCT's budget).

Run: python launch.py --config=configs/digits_meanflow.py --workdir=runs/digits/meanflow
5000 steps, over training seeds 0-2: one-step Frechet 6.866 [6.386, 7.124] (15.2x the teacher's),
two-step 1.313 [1.220, 1.450] (2.91x); docs/results.md#over-training-seeds.
"""

from configs.digits import base_config
from configs.recipes import meanflow_objective


def get_config():
    c = base_config()
    meanflow_objective(c)
    c.data.batch_size = 256
    c.optim.lr = 1e-3
    c.optim.warmup_steps = 200
    c.train.num_steps = 5000
    c.train.ema_rate = 0.998
    return c
