"""Frozen networks read from published weights without PyTorch: the FID Inception-v3, LPIPS-VGG
and the shipped digits classifier (`torch_checkpoint` reads PyTorch files, `weights` fetches and
checks them); `edm_pickle` reads NVlabs/edm network pickles."""

from consistency_jax.networks.pretrained.digits import load_digits_features
from consistency_jax.networks.pretrained.inception import load_fid_inception
from consistency_jax.networks.pretrained.lpips import load_lpips
from consistency_jax.networks.pretrained.weights import WeightsUnavailableError

__all__ = ["WeightsUnavailableError", "load_digits_features", "load_fid_inception", "load_lpips"]
