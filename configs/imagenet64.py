"""Shared settings of the ImageNet-64 configs: TFDS imagenet_resized/64x64, class-conditional,
EDM's ADM network (DhariwalUNet at EDM's ImageNet-64 size, 295.90M parameters with 1000 classes).

imagenet_resized is Chrabaszcz et al.'s box-resized ImageNet (1,281,167 training images) with its
own label order, not the guided-diffusion 64x64 the papers' FIDs use; preparing it once needs
network access and `pip install tensorflow-cpu`, as for CIFAR-10.
"""

import ml_collections

from consistency_jax.config import schema


def base_config() -> ml_collections.ConfigDict:
    c = schema.get_config()
    c.data.name = "imagenet_resized/64x64"
    c.data.conditional = True
    c.data.random_flip = True  # openai/consistency_models cm/image_datasets.py load_data default
    c.network.name = "adm"
    c.network.unet.model_channels = 192
    c.network.unet.channel_mult = (1, 2, 3, 4)
    c.network.unet.channel_mult_emb = 4
    c.network.unet.num_blocks = 3
    c.network.unet.attn_resolutions = (32, 16, 8)
    c.network.compute_dtype = "bfloat16"  # the papers: fp16 with loss scaling
    c.train.log_every = 500
    c.train.ckpt_every = 10_000
    c.train.sample_every = 50_000
    c.sample.num_samples = 1024
    c.sample.batch_size = 256
    return c
