"""NVlabs' EDM CIFAR-10 teacher, imported: EDMPrecond around DDPM++ (unconditional, VP settings).

File: edm-cifar10-32x32-uncond-vp.pkl from https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/
(NVlabs/edm README). Import (no torch needed), then distil from it:
  python -m consistency_jax.jobs.convert edm-cifar10-32x32-uncond-vp.pkl --out=runs/edm_vp \
      --config=configs/edm_cifar10_uncond_vp.py
  python launch.py --config=configs/cifar10_cd.py --workdir=runs/cd_vp \
      --config.objective.teacher_workdir=runs/edm_vp --config.network.name=ddpmpp
Source FID (EDM paper/README): 1.97 at 35 NFE (Heun, 18 steps); not measured here.
"""

from configs.cifar10 import base_config

PICKLE = "edm-cifar10-32x32-uncond-vp.pkl"
URL = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/" + PICKLE
SOURCE_FID = 1.97  # 35 NFE, NVlabs/edm README


def get_config():
    c = base_config()
    c.objective.name = "edm"
    c.network.name = "ddpmpp"  # the import overwrites the network keys with the pickle's own
    c.network.dropout = 0.13
    c.data.conditional = False
    c.sample.teacher_steps = 18  # 35 evaluations, as the source FID
    return c
