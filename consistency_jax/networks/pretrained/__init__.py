"""Frozen networks read from published weights without PyTorch: the FID Inception-v3, LPIPS-VGG,
the shipped digits classifier (`torch_checkpoint` reads PyTorch files, `weights` fetches and
checks them) and the Stable Diffusion VAE (diffusers safetensors); `edm_pickle` reads NVlabs/edm
network pickles."""

from consistency_jax.networks.pretrained.digits import load_digits_features
from consistency_jax.networks.pretrained.inception import load_fid_inception
from consistency_jax.networks.pretrained.lpips import load_lpips
from consistency_jax.networks.pretrained.sd_vae import load_sd_vae, load_sd_vae_autoencoder
from consistency_jax.networks.pretrained.weights import WeightsUnavailableError

__all__ = [
    "WeightsUnavailableError",
    "load_digits_features",
    "load_fid_inception",
    "load_lpips",
    "load_sd_vae",
    "load_sd_vae_autoencoder",
]
