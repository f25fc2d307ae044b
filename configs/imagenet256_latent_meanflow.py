r"""MeanFlow on ImageNet-256 in SD-VAE latents (32x32x4, scaling 0.18215): the objective and training
settings of MeanFlow's official JAX code (Gsunshine/meanflow configs/default.py, run_b4.yml; README
table, MF-B/4: 1-NFE FID 11.35 at 240 epochs with omega = 1, kappa = 0.5; REFERENCE.md 12.A).

Run: python launch.py --config=configs/imagenet256_latent_meanflow.py --workdir=runs/in256_meanflow \
         --config.autoencoder.path=/path/to/sd-vae-ft-mse/diffusion_pytorch_model.safetensors
Needs TFDS imagenet2012 (a manual download) and the SD VAE weights; the training split is encoded
once into workdir/latents (about 21 GB of float32 latents). Not run here: no figure of ours yet.
Differences from the paper's setting: this project's ADM U-Net stands in for DiT-B/4, training
without MeanFlow's guided target (omega, kappa) and its 10% label dropout, latents are the
posterior mean of the unflipped images (MeanFlow samples the posterior), so expect another FID.
"""

from configs.recipes import meanflow_objective
from consistency_jax.config import schema


def get_config():
    c = schema.get_config()
    c.data.name = "imagenet2012"
    c.data.image_size = 256  # central square crop, bicubic resize
    c.data.conditional = True
    c.data.batch_size = 256
    c.autoencoder.kind = "sd_vae"
    c.autoencoder.scaling_factor = 0.18215
    c.network.name = "adm"
    c.network.unet.model_channels = 192
    c.network.unet.channel_mult = (1, 2, 3, 4)  # 32, 16, 8, 4 on 32x32 latents
    c.network.unet.num_blocks = 3
    c.network.unet.attn_resolutions = (16, 8)
    c.network.compute_dtype = "bfloat16"
    meanflow_objective(c)
    o = c.objective
    o.p_mean, o.p_std = -0.4, 1.0  # MeanFlow JAX defaults
    o.meanflow_equal_fraction = 0.75  # data_proportion: the fraction with r = t
    o.meanflow_norm_p, o.meanflow_norm_eps = 1.0, 0.01
    c.optim.lr = 1e-4
    c.optim.b2 = 0.95
    c.train.num_steps = 1_201_095  # 240 epochs of 1,281,167 images at batch 256
    c.train.ema_rate = 0.9999
    c.train.log_every = 500
    c.train.ckpt_every = 10_000
    c.sample.num_samples = 1024
    c.sample.batch_size = 256
    return c
