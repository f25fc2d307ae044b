"""iCT on the embedded digits: pseudo-Huber, iCT weighting, lognormal index, N 10 -> 1280, batch 256.

Run: python launch.py --config=configs/digits_ict.py --workdir=runs/digits/ict
5000 steps: 13 min 0 s on a 2-core CPU beside the teacher and CD in pipeline.py. Over training
seeds 0-2 (pipeline.py --seeds=0,1,2): one-step Frechet 1.297 [1.190, 1.445] (2.88x the teacher's),
two-step 1.187; the variants measured: docs/results.md.
"""

from configs.digits import base_config
from configs.recipes import ict_objective


def get_config():
    c = base_config()
    ict_objective(c)
    c.data.batch_size = 256
    c.optim.lr = 1e-3
    c.train.num_steps = 5000  # trains beside the teacher and CD (pipeline.py --concurrent)
    c.train.ema_rate = 0.998
    c.sample.multistep_sigmas = (0.821,)
    return c
