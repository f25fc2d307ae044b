"""Shared settings of the digits configs: scikit-learn's embedded 8x8 digits, a small DDPM++."""

import ml_collections

from consistency_jax.config import schema


def base_config() -> ml_collections.ConfigDict:
    c = schema.get_config()
    c.data.name = "digits"
    c.data.image_size = 8
    c.data.batch_size = 64
    c.network.name = "ddpmpp"
    c.network.unet.model_channels = 16
    c.network.unet.channel_mult = (1, 2)
    c.network.unet.channel_mult_emb = 4
    c.network.unet.num_blocks = 1
    c.network.unet.attn_resolutions = (4,)
    c.train.ema_warmup = True
    c.train.log_every = 250
    c.train.ckpt_every = 1000
    c.sample.num_samples = 500  # the grid and .npz each stage writes; eval draws its own 10,000
    c.sample.batch_size = 500
    # 2,000 samples left the Frechet distance noisy (0.63-1.29 over four seeds for one teacher)
    # and biased up (0.76 -> 0.50 at 10,000 for the same teacher)
    c.eval.num_samples = 10_000
    c.eval.batch_size = 500
    c.eval.shard_size = 2000
    return c


def latent(c: ml_collections.ConfigDict, autoencoder: str = "runs/digits/autoencoder") -> ml_collections.ConfigDict:
    """`c` in the latent space of the digits autoencoder run in `autoencoder`
    (configs/digits_autoencoder.py): 4x4x2 latents scaled to unit std, so sigma_data = 1."""
    c.autoencoder.kind = "digits"
    c.autoencoder.workdir = autoencoder
    c.model.sigma_data = 1.0
    return c
