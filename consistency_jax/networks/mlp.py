"""A residual MLP for vector data, with the same interface as the U-Net."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from consistency_jax.networks.layers import LogvarHead, add_guidance, embed_times, first_time, noise_embedding


class MLP(nn.Module):
    """F(x, c_noise) for flat vector data: x [B, D] -> [B, D].

    Interface shared by every network: `__call__(x, c_noise, labels=None, *, train=False)`,
    x already scaled by c_in, c_noise of shape [B] (or [B, K]: K times, their embeddings summed);
    dropout draws from the 'dropout' rng.
    Labels (int [B]) index a class embedding of `num_classes + 1` rows, the last one the null label.
    guidance (w, [B] or a scalar) is added as LCM's w-embedding where `guidance_embedding`.
    """

    hidden: int = 256
    depth: int = 4
    emb_dim: int = 128
    dropout: float = 0.0
    embedding_type: str = "positional"
    fourier_scale: float = 16.0
    num_classes: int = 0
    dtype: jnp.dtype = jnp.float32  # arithmetic dtype; the caller casts parameters and x to it
    logvar_head: bool = False  # parameters of a LogvarHead named 'logvar' (see `networks.logvar_fn`)
    guidance_embedding: bool = False  # takes the guidance scale w (layers.GuidanceEmbedding)

    @nn.compact
    def __call__(
        self, x: jax.Array, c_noise: jax.Array, labels: jax.Array | None = None,
        guidance: jax.Array | None = None, *, train: bool = False,
    ) -> jax.Array:
        if self.logvar_head:
            LogvarHead(name="logvar")(first_time(c_noise))  # created here, applied by networks.logvar_fn
        emb = embed_times(noise_embedding(self.embedding_type, self.emb_dim, self.fourier_scale), c_noise)
        if self.num_classes:
            if labels is None:
                labels = jnp.full(x.shape[:1], self.num_classes, jnp.int32)
            emb = emb + nn.Embed(self.num_classes + 1, self.emb_dim)(labels)
        emb = add_guidance(emb, guidance, self.guidance_embedding)
        emb = nn.silu(nn.Dense(self.emb_dim)(nn.silu(nn.Dense(self.emb_dim)(emb))))
        emb = emb.astype(self.dtype)  # the embeddings run in float32 (c_noise needs it)
        h = nn.Dense(self.hidden)(x) + nn.Dense(self.hidden)(emb)
        for _ in range(self.depth):
            r = nn.silu(nn.LayerNorm()(h))
            r = nn.Dense(self.hidden)(r) + nn.Dense(self.hidden)(emb)
            r = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(r))
            h = h + nn.Dense(self.hidden)(r)
        return nn.Dense(x.shape[-1])(nn.silu(nn.LayerNorm()(h)))
