"""Shared settings of the CIFAR-10 configs: TFDS cifar10 with flips, NCSN++ at the papers' size."""

import ml_collections

from consistency_jax.config import schema


def base_config() -> ml_collections.ConfigDict:
    c = schema.get_config()
    c.data.name = "cifar10"
    c.data.batch_size = 512
    c.data.random_flip = True
    c.network.name = "ncsnpp"  # 56.40M parameters
    c.network.dropout = 0.0
    c.train.log_every = 500
    c.train.ckpt_every = 10_000
    c.train.sample_every = 50_000
    c.sample.num_samples = 1024
    c.sample.batch_size = 256
    return c
