"""The autoencoder of a latent run: images <-> latents, and the latent scale factor.

Data, training, sampling and evaluation all go through an `Autoencoder`: the data set is encoded
once and scaled (`scale`), the objectives and samplers see scaled latents only, and samples are
unscaled (`unscale`) and decoded before they are saved or evaluated (LDM, Rombach et al. 2022,
Sec. 4.3.2: z is multiplied by a scale factor for unit variance before the diffusion model).
"""

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax

KINDS = ("none", "digits", "sd_vae")  # config.autoencoder.kind: pixel space, a trained digits AE, the SD VAE


@dataclasses.dataclass(frozen=True)
class Autoencoder:
    """A frozen autoencoder, closed over its parameters.

    encode: NHWC images in [-1, 1] -> unscaled latents (the posterior mean for a KL autoencoder)
        [B, H / downsample, W / downsample, latent_channels].
    decode: unscaled latents -> NHWC images (in [-1, 1] up to the decoder's error).
    scaling_factor: latents are multiplied by it for the diffusion model (SD VAE: 0.18215).
    """

    encode: Callable[[jax.Array], jax.Array]
    decode: Callable[[jax.Array], jax.Array]
    scaling_factor: float
    latent_channels: int
    downsample: int


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
    # the parameters are an argument of the compiled programs, not constants baked into them
    encode = jax.jit(lambda v, x: model.apply(v, x, method=ConvAutoencoder.encode))
    decode = jax.jit(lambda v, z: model.apply(v, z, image_channels, method=ConvAutoencoder.decode))
    variables = {"params": params}
    return Autoencoder(
        lambda x: encode(variables, x),
        lambda z: decode(variables, z),
        float(scaling_factor),
        model.latent_channels,
        model.downsample,
    )
