"""The autoencoder of a latent run: images <-> latents, and the latent scale factor.

Data, training, sampling and evaluation all go through an `Autoencoder`: the data set is encoded
once and scaled (`scale`), the objectives and samplers see scaled latents only, and samples are
unscaled (`unscale`) and decoded before they are saved or evaluated (LDM, Rombach et al. 2022,
Sec. 4.3.2: z is multiplied by a scale factor for unit variance before the diffusion model).
"""

import dataclasses
from collections.abc import Callable

import jax


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
