"""NVlabs' EDM ImageNet-64 teacher, imported: EDMPrecond around ADM (class-conditional).

File: edm-imagenet-64x64-cond-adm.pkl from https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/
(NVlabs/edm README). Import (no torch needed), then distil from it:
  python -m consistency_jax.jobs.convert edm-imagenet-64x64-cond-adm.pkl --out=runs/edm_in64 \
      --config=configs/edm_imagenet64_cond_adm.py
  python launch.py --config=configs/imagenet64_cd.py --workdir=runs/cd_in64 \
      --config.objective.teacher_workdir=runs/edm_in64
Source FID (EDM paper/README): 1.36 at 511 NFE (stochastic sampler, 256 steps, S_churn 40);
not measured here.
"""

from configs.imagenet64_edm import get_config as teacher_config

PICKLE = "edm-imagenet-64x64-cond-adm.pkl"
URL = "https://nvlabs-fi-cdn.nvidia.com/edm/pretrained/" + PICKLE
SOURCE_FID = 1.36  # 511 NFE, NVlabs/edm README


def get_config():
    return teacher_config()  # ADM, conditional, EDM's stochastic sampler; the import sets the network
