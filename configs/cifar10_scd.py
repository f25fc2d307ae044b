r"""sCD on CIFAR-10 with the sCM paper's settings (App. G): the EDM teacher, converted, gives dx_t/dt.

Run: python launch.py --config=configs/cifar10_scd.py --workdir=runs/cifar10_scd \
         --config.objective.teacher_workdir=runs/cifar10_edm
sCM distils a TrigFlow DDPM++ teacher; this project's is the EDM NCSN++ of configs/cifar10_edm.py,
converted exactly; without FastGen's 1/sigma prior weighting (objective.prior_weighting, worse on
the digits). The paper states no iteration count; 500k is FastGen's. Not yet run here; the
paper's FID: 3.66 in one step, 2.52 in two (t_mid = 1.1).
"""

from configs.cifar10 import base_config
from configs.recipes import scm_objective


def get_config():
    c = base_config()
    scm_objective(c, "scd")
    c.network.dropout = 0.0
    c.optim.lr = 1e-4
    c.train.num_steps = 500_000
    c.train.ema_rate = 0.99929  # half-life 0.5 Mimg at batch 512
    return c
