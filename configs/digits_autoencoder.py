"""A small conv autoencoder of the embedded 8x8 digits (8x8x1 -> 4x4x2 latents), for latent runs.

Run: python launch.py --config=configs/digits_autoencoder.py --workdir=runs/digits/autoencoder
It ends by writing workdir/autoencoder.json: the scaling factor (1 / std of the latents of the
data), the per-channel latent std and the reconstruction error; --mode=eval gives the Frechet
distance of its reconstructions of the data, the floor of the latent runs. 1500 steps: 3 min 7 s on a
shared 2-core CPU. Result: reconstruction MSE 0.0048, scaling factor 0.7305, Frechet of the
reconstructions 0.068 (docs/results.md#latent).
"""

from configs.digits import base_config


def get_config():
    c = base_config()
    c.network.name = "autoencoder"
    c.network.autoencoder.channels = 32
    c.network.autoencoder.latent_channels = 2
    c.network.autoencoder.downsample = 2
    c.objective.name = "autoencoder"
    c.optim.name = "adam"
    c.optim.lr = 2e-3
    c.optim.decay_steps = 1500
    c.train.num_steps = 1500
    c.train.ema_rate = 0.99
    c.train.log_every = 250
    return c
