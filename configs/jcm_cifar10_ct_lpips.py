r"""OpenAI's CIFAR-10 consistency model, imported: CT-LPIPS (openai/consistency_models_cifar10, jcm).

File: ct-lpips/checkpoints/checkpoint_74 (a flax msgpack train state with a target network) from
https://openaipublic.blob.core.windows.net/consistency/jcm_checkpoints/ (jcm README). Import its
EMA network (no torch needed), then sample or evaluate it:
  python -m consistency_jax.jobs.convert checkpoint_74 --out=runs/jcm_ct_lpips \
      --config=configs/jcm_cifar10_ct_lpips.py
  python launch.py --mode=eval --config=configs/jcm_cifar10_ct_lpips.py --workdir=runs/jcm_ct_lpips
Source FID (CM paper, CT-LPIPS, as quoted in later papers): 8.70 in one step, 5.83 in two; not
measured here. The two-step sigma below is this project's CT default, not the source's schedule.
Network and parametrization as configs/jcm_cifar10_cd_lpips.py (jcm configs/cifar10_ve_ct_adaptive.py).
"""

from configs.cifar10_ct import get_config as ct_config

FILE = "ct-lpips/checkpoints/checkpoint_74"
URL = "https://openaipublic.blob.core.windows.net/consistency/jcm_checkpoints/" + FILE
SOURCE_FID = {1: 8.70, 2: 5.83}  # steps -> FID
PARAMS = "params_ema"  # the tree jcm samples with; its target_params are not imported


def get_config():
    c = ct_config()
    c.model.sigma_data, c.model.sigma_min, c.model.sigma_max = 0.5, 0.002, 80.0  # jcm KVESDE
    return c
