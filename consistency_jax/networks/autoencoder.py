"""The autoencoder of a latent run: images <-> latents, and the latent scale factor.

Data, training, sampling and evaluation all go through an `Autoencoder`: the data set is encoded
once and scaled (`scale`), the objectives and samplers see scaled latents only, and samples are
unscaled (`unscale`) and decoded before they are saved or evaluated (LDM, Rombach et al. 2022,
Sec. 4.3.2: z is multiplied by a scale factor for unit variance before the diffusion model).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

KINDS = ("none", "digits", "sd_vae")  # config.autoencoder.kind: pixel space, a trained digits AE, the SD VAE


@dataclasses.dataclass(frozen=True, eq=False)
class Autoencoder:
    """A frozen autoencoder: pure jittable functions of its parameters, and those parameters.

    encode_fn(params, images): NHWC images in [-1, 1] -> unscaled latents (the posterior mean for a
        KL autoencoder) [B, H / downsample, W / downsample, latent_channels].
    decode_fn(params, latents): unscaled latents -> NHWC images (in [-1, 1] up to the decoder's error).
    params: the parameters both take. A jitted caller passes them in as an argument (`encode` and
        `decode` do, and a latent run's sampler), so that they are an input of the compiled
        program, not constants baked into it.
    scaling_factor: latents are multiplied by it for the diffusion model (SD VAE: 0.18215).
    """

    encode_fn: Callable[[Any, jax.Array], jax.Array]
    decode_fn: Callable[[Any, jax.Array], jax.Array]
    params: Any
    scaling_factor: float
    latent_channels: int
    downsample: int

    def encode(self, images: jax.Array) -> jax.Array:
        """encode_fn at this autoencoder's params."""
        return self.encode_fn(self.params, images)

    def decode(self, latents: jax.Array) -> jax.Array:
        """decode_fn at this autoencoder's params."""
        return self.decode_fn(self.params, latents)


def scale(latents: jax.Array, ae: Autoencoder) -> jax.Array:
    """Unscaled latents -> the scaled latents the diffusion model sees (z * scaling_factor)."""
    return latents * ae.scaling_factor


def unscale(latents: jax.Array, ae: Autoencoder) -> jax.Array:
    """Scaled latents (samples of a latent run) -> the unscaled latents `ae.decode` takes."""
    return latents / ae.scaling_factor


def latent_shape(image_shape: tuple[int, int, int], ae: Autoencoder) -> tuple[int, int, int]:
    """[H, W, C] images -> the [H / downsample, W / downsample, latent_channels] latents."""
    h, w, _ = image_shape
    return (h // ae.downsample, w // ae.downsample, ae.latent_channels)


class _Encoder(nn.Module):
    channels: int
    latent_channels: int
    levels: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = nn.Conv(self.channels, (3, 3))(x)
        for level in range(self.levels):
            width = self.channels * 2 ** (level + 1)
            h = nn.Conv(width, (3, 3), strides=(2, 2))(nn.silu(h))
            h = nn.Conv(width, (3, 3))(nn.silu(h))
        return nn.Conv(self.latent_channels, (1, 1))(nn.silu(h))


class _Decoder(nn.Module):
    channels: int
    levels: int

    @nn.compact
    def __call__(self, z: jax.Array, image_channels: int) -> jax.Array:
        h = nn.Conv(self.channels * 2**self.levels, (3, 3))(z)
        for level in reversed(range(self.levels)):
            b, height, width, c = h.shape
            h = jax.image.resize(nn.silu(h), (b, 2 * height, 2 * width, c), "nearest")
            h = nn.Conv(self.channels * 2**level, (3, 3))(h)
            h = nn.Conv(self.channels * 2**level, (3, 3))(nn.silu(h))
        return nn.Conv(image_channels, (3, 3))(nn.silu(h))


class ConvAutoencoder(nn.Module):
    """A small deterministic conv autoencoder (a plain AE, no KL term), trained by an autoencoder
    run: `downsample` = 2^levels, each level a stride-2 conv (encoder) or a nearest-neighbour
    upsampling (decoder) and a 3x3 conv, `channels` wide at full resolution, doubling per level.

    As a network of the training loop, F(x, c_noise, labels) is the reconstruction decode(encode(x))
    (c_noise and labels are ignored).
    """

    channels: int = 32
    latent_channels: int = 2
    downsample: int = 2

    def setup(self):
        levels = self.downsample.bit_length() - 1
        self.encoder = _Encoder(self.channels, self.latent_channels, levels)
        self.decoder = _Decoder(self.channels, levels)

    def encode(self, x: jax.Array) -> jax.Array:
        return self.encoder(x)

    def decode(self, z: jax.Array, image_channels: int) -> jax.Array:
        return self.decoder(z, image_channels)

    def __call__(self, x, c_noise=None, labels=None, train: bool = False) -> jax.Array:
        return self.decode(self.encode(x), x.shape[-1])


def conv_autoencoder(model: ConvAutoencoder, params, image_channels: int, scaling_factor: float) -> Autoencoder:
    """The `Autoencoder` of a trained ConvAutoencoder at `params` (jitted encode and decode)."""
    return Autoencoder(
        jax.jit(lambda p, x: model.apply({"params": p}, x, method=ConvAutoencoder.encode)),
        jax.jit(lambda p, z: model.apply({"params": p}, z, image_channels, method=ConvAutoencoder.decode)),
        params,
        float(scaling_factor),
        model.latent_channels,
        model.downsample,
    )
