r"""sCD of the toy EDM teacher (sCM Alg. 1): dx_t/dt from the teacher converted to TrigFlow.

Run: python launch.py --config=configs/toy_scd.py --workdir=runs/toy/scd \
         --config.objective.teacher_workdir=runs/toy/edm
12,000 steps at lr 1e-4. Result over training seeds 0-2: sliced W2 to the data 0.0302 [0.0248,
0.0378] in one step, 0.0326 [0.0294, 0.0356] in two (noise floor 0.0240; CD 0.0300 [0.0239,
0.0381]). At lr 4e-4 sCD settles far from the flow map (3000 steps: 0.0784 [0.0724, 0.0852]):
docs/results.md#scd-on-the-toy-the-learning-rate.
"""

from configs.recipes import scm_objective
from consistency_jax.config import schema


def get_config():
    c = schema.get_config()
    c.data.name = "gmm2d"
    scm_objective(c, "scd")
    c.objective.tangent_warmup_steps = 1000
    c.optim.lr = 1e-4  # 4e-4 settles in a noisy equilibrium far from the flow map
    c.train.num_steps = 12_000
    c.train.ema_rate = 0.999
    c.train.log_every = 500
    c.train.ckpt_every = 6000
    c.sample.num_samples = 10_000
    c.sample.batch_size = 5_000
    return c
