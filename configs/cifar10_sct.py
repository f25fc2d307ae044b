r"""sCT on CIFAR-10 with the sCM paper's settings (App. G), started from the EDM teacher.

Run: python launch.py --config=configs/cifar10_sct.py --workdir=runs/cifar10_sct \
         --config.objective.teacher_workdir=runs/cifar10_edm
sCM starts from a TrigFlow DDPM++ teacher; this project's teacher is the EDM NCSN++ of
configs/cifar10_edm.py, converted exactly (model.scm_network='edm'); without FastGen's 1/sigma prior weighting
(objective.prior_weighting, worse on the digits). The paper states no
iteration count; 350k is FastGen's. Not yet run here; the paper's FID: 2.85 in one step, 2.06 in
two (t_mid = 1.1).
"""

from configs.cifar10 import base_config
from configs.recipes import scm_objective


def get_config():
    c = base_config()
    scm_objective(c, "sct")
    c.network.dropout = 0.2
    c.optim.lr = 1e-4
    c.train.num_steps = 350_000
    c.train.ema_rate = 0.99929  # half-life 0.5 Mimg at batch 512
    return c
