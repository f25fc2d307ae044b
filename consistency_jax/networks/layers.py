"""Layers shared by every network: noise-level embeddings and the loss-weighting head."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding of c_noise (EDM networks.py `PositionalEmbedding`, DDPM++)."""

    num_channels: int
    max_positions: int = 10000
    endpoint: bool = True

    @nn.compact
    def __call__(self, c_noise: jax.Array) -> jax.Array:
        half = self.num_channels // 2
        freqs = jnp.arange(half, dtype=jnp.float32) / (half - (1 if self.endpoint else 0))
        freqs = (1.0 / self.max_positions) ** freqs
        angles = c_noise.astype(jnp.float32)[:, None] * freqs[None, :]
        return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of c_noise (EDM `FourierEmbedding`, NCSN++); frequencies are fixed."""

    num_channels: int
    scale: float = 16.0

    @nn.compact
    def __call__(self, c_noise: jax.Array) -> jax.Array:
        freqs = self.param(
            "freqs", nn.initializers.normal(stddev=self.scale), (self.num_channels // 2,)
        )
        freqs = jax.lax.stop_gradient(freqs)  # a buffer in EDM: never trained
        angles = 2 * jnp.pi * c_noise.astype(jnp.float32)[:, None] * freqs[None, :]
        return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class GuidanceEmbedding(nn.Module):
    """The guidance scale w as an input (LCM's w-embedding, `timestep_cond`): a sinusoidal
    embedding of w through a bias-free linear layer, added to the noise embedding (diffusers
    `TimestepEmbedding.cond_proj`). The layer starts at zero, so a student started from its
    teacher computes the teacher's function at every w."""

    num_channels: int

    @nn.compact
    def __call__(self, w: jax.Array) -> jax.Array:
        emb = PositionalEmbedding(self.num_channels)(jnp.asarray(w, jnp.float32))
        return nn.Dense(self.num_channels, use_bias=False, kernel_init=nn.initializers.zeros)(emb)


def add_guidance(emb: jax.Array, guidance: jax.Array | None, enabled: bool) -> jax.Array:
    """emb + the w-embedding (a `GuidanceEmbedding` named 'map_guidance') of a network built with
    one; a network built without one refuses a w."""
    if not enabled:
        if guidance is not None:
            raise ValueError("This network takes no guidance scale: build it with guidance_embedding=True.")
        return emb
    if guidance is None:
        raise ValueError("This network was built with a guidance embedding: pass the guidance scale w.")
    w = jnp.broadcast_to(jnp.asarray(guidance, jnp.float32), emb.shape[:1])
    return emb + GuidanceEmbedding(emb.shape[-1], name="map_guidance")(w)


def noise_embedding(kind: str, num_channels: int, fourier_scale: float) -> nn.Module:
    """The embedding named by a config: 'positional' or 'fourier'."""
    if kind == "positional":
        return PositionalEmbedding(num_channels)
    if kind == "fourier":
        return FourierEmbedding(num_channels, scale=fourier_scale)
    raise ValueError(f"Unknown embedding_type {kind!r}; use 'positional' or 'fourier'.")


def embed_times(embedding: nn.Module, c_noise: jax.Array) -> jax.Array:
    """The embedding of c_noise [B], or the sum of one shared embedding of each column of c_noise
    [B, K] (MeanFlow's two times (t, t - r), summed as its DiT sums its time embedders)."""
    if c_noise.ndim == 1:
        return embedding(c_noise)
    return sum(embedding(c_noise[:, k]) for k in range(c_noise.shape[1]))


def first_time(c_noise: jax.Array) -> jax.Array:
    """c_noise [B], or the first column of c_noise [B, K]."""
    return c_noise if c_noise.ndim == 1 else c_noise[:, 0]


class LogvarHead(nn.Module):
    """w_phi(t): the learned log-variance of the loss at time t, a linear layer on a positional
    embedding of t (sCM's adaptive weighting, EDM2's uncertainty head); starts at 0 (weight 1)."""

    num_channels: int = 128

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        emb = PositionalEmbedding(self.num_channels)(t)
        return nn.Dense(1, kernel_init=nn.initializers.zeros)(emb)[:, 0]
