r"""OpenAI's CIFAR-10 consistency model, imported: CD-LPIPS (openai/consistency_models_cifar10, jcm).

File: cd-lpips/checkpoints/checkpoint_80 (a flax msgpack train state, ~0.9 GB) from
https://openaipublic.blob.core.windows.net/consistency/jcm_checkpoints/ (jcm README). Import its
EMA network (no torch needed), then sample or evaluate it:
  python -m consistency_jax.jobs.convert checkpoint_80 --out=runs/jcm_cd_lpips \
      --config=configs/jcm_cifar10_cd_lpips.py
  python launch.py --mode=eval --config=configs/jcm_cifar10_cd_lpips.py --workdir=runs/jcm_cd_lpips
Source FID (CM paper, CD-LPIPS): 3.55 in one step, 2.93 in two; not measured here.
Its network is jcm's NCSN++ (configs/cifar10_ve_cd.py), our `ncsnpp`; its consistency function
(jcm get_distiller_fn: sigma_d 0.5, eps = t_min 0.002, c_in = 1 / sqrt(t^2 + sigma_d^2),
c_noise = ln(t) / 4) is our 'consistency' parametrization as it stands, so nothing is wrapped.
The run's objective (CD, LPIPS) loads the LPIPS weights when the state is built, as any LPIPS run,
and names its teacher, jcm's EDM (configs/jcm_cifar10_edm.py), which sampling and eval never read.
"""

from configs.cifar10_cd import get_config as cd_config

FILE = "cd-lpips/checkpoints/checkpoint_80"
URL = "https://openaipublic.blob.core.windows.net/consistency/jcm_checkpoints/" + FILE
SOURCE_FID = {1: 3.55, 2: 2.93}  # steps -> FID, CM paper Table 1 (CD with LPIPS)
PARAMS = "params_ema"  # the tree jcm samples with (jcm/sampling.py); convert --params=params for the online one


def get_config():
    c = cd_config()
    c.model.sigma_data, c.model.sigma_min, c.model.sigma_max = 0.5, 0.002, 80.0  # jcm KVESDE
    c.objective.teacher_workdir = "runs/jcm_edm"  # where configs/jcm_cifar10_edm.py's import puts it
    c.sample.multistep_sigmas = (0.5853,)  # jcm's 2-step ts (0, 11, 17) on its 18-point grid
    return c
