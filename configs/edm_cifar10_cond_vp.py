"""NVlabs' EDM CIFAR-10 teacher, imported: EDMPrecond around DDPM++ (class-conditional, VP settings).

File: edm-cifar10-32x32-cond-vp.pkl from https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/
(NVlabs/edm README). Import (no torch needed), then distil from it:
  python -m consistency_jax.jobs.convert edm-cifar10-32x32-cond-vp.pkl --out=runs/edm_cond_vp \
      --config=configs/edm_cifar10_cond_vp.py
  python launch.py --config=configs/cifar10_cd.py --workdir=runs/cd_cond_vp \
      --config.objective.teacher_workdir=runs/edm_cond_vp --config.network.name=ddpmpp --config.data.conditional=True
Source FID (EDM paper/README): 1.79 at 35 NFE (Heun, 18 steps); not measured here.
"""

from configs.cifar10 import base_config

PICKLE = "edm-cifar10-32x32-cond-vp.pkl"
URL = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/" + PICKLE
SOURCE_FID = 1.79  # 35 NFE, NVlabs/edm README


def get_config():
    c = base_config()
    c.objective.name = "edm"
    c.network.name = "ddpmpp"  # the import overwrites the network keys with the pickle's own
    c.network.dropout = 0.13
    c.data.conditional = True
    c.sample.teacher_steps = 18  # 35 evaluations, as the source FID
    return c
