r"""OpenAI's CIFAR-10 EDM teacher of its consistency models, imported (openai/consistency_models_cifar10).

File: edm_cifar10_ema (a flax msgpack train state) from
https://openaipublic.blob.core.windows.net/consistency/jcm_checkpoints/ (jcm README), the teacher
its CD checkpoints distil (jcm configs/cifar10_k_ve.py: NCSN++, dropout 0.13). Import it, then
sample it or distil from it:
  python -m consistency_jax.jobs.convert edm_cifar10_ema --out=runs/jcm_edm \
      --config=configs/jcm_cifar10_edm.py
  python launch.py --mode=sample --config=configs/jcm_cifar10_edm.py --workdir=runs/jcm_edm
  python launch.py --config=configs/cifar10_cd.py --workdir=runs/cd \
      --config.objective.teacher_workdir=runs/jcm_edm
Its denoiser (jcm get_denoiser_fn) is EDM's with sigma_d 0.5 and c_noise = ln(sigma) / 4: our
'edm' parametrization. Source FID: the jcm README reports none for this file; not measured here.
"""

from configs.cifar10 import base_config

FILE = "edm_cifar10_ema"
URL = "https://openaipublic.blob.core.windows.net/consistency/jcm_checkpoints/" + FILE
PARAMS = "params_ema"


def get_config():
    c = base_config()
    c.objective.name = "edm"
    c.network.dropout = 0.13  # jcm configs/cifar10_k_ve.py (training only)
    c.model.sigma_data, c.model.sigma_min, c.model.sigma_max = 0.5, 0.002, 80.0  # jcm KVESDE
    c.sample.teacher_steps = 18  # 35 evaluations with Heun, as EDM's CIFAR-10 sampler
    return c
