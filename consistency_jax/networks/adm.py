"""EDM's `DhariwalUNet` (NVlabs/edm training/networks.py), the ADM architecture of "Diffusion
Models Beat GANs on Image Synthesis", in Flax, NHWC: the ImageNet-64 network of EDM, CM and iCT."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from consistency_jax.networks.layers import LogvarHead, PositionalEmbedding, embed_times, first_time
from consistency_jax.networks.unet import (
    Conv2d,
    downsample,
    edm_bias_init,
    edm_init,
    group_norm,
    self_attention,
    upsample,
)

_EPS = 1e-5  # EDM UNetBlock's and GroupNorm's default eps, which DhariwalUNet keeps
# DhariwalUNet's `init`: kaiming_uniform weights and biases, both times sqrt(1/3) (PyTorch's default)
_INIT = {"init_mode": "kaiming_uniform", "init_weight": float(np.sqrt(1 / 3)), "init_bias": float(np.sqrt(1 / 3))}
_ZERO = {"init_mode": "kaiming_uniform", "init_weight": 0.0, "init_bias": 0.0}  # `init_zero`


def _dense(features: int, fan_in: int, name: str, *, zero: bool = False) -> nn.Dense:
    """EDM `Linear` with DhariwalUNet's `init` (or `init_zero`)."""
    init = _ZERO if zero else _INIT
    return nn.Dense(
        features, kernel_init=edm_init(init["init_mode"], init["init_weight"]),
        bias_init=edm_bias_init(init["init_mode"], fan_in, init["init_bias"]), name=name,
    )


class ADMBlock(nn.Module):
    """EDM `UNetBlock` as DhariwalUNet sets it up: adaptive scale and shift from the embedding,
    skip_scale 1, a 1x1 skip conv only where the width changes (else resampling alone), and
    attention with one head per 64 channels."""

    features: int
    up: bool = False
    down: bool = False
    attention: bool = False
    channels_per_head: int = 64
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, train: bool) -> jax.Array:
        c, orig = self.features, x
        x = Conv2d(c, 3, up=self.up, down=self.down, name="conv0", **_INIT)(
            nn.silu(group_norm(x.shape[-1], "norm0", _EPS)(x))
        )
        scale, shift = jnp.split(_dense(2 * c, emb.shape[-1], "affine")(emb)[:, None, None, :], 2, axis=-1)
        x = nn.silu(shift + group_norm(c, "norm1", _EPS)(x) * (scale + 1))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = Conv2d(c, 3, name="conv1", **_ZERO)(x)
        if c != orig.shape[-1]:  # resample_proj=False: a 1x1 conv only where the width changes
            orig = Conv2d(c, 1, up=self.up, down=self.down, name="skip", **_INIT)(orig)
        elif self.up:
            orig = upsample(orig, (1, 1))
        elif self.down:
            orig = downsample(orig, (1, 1))
        x = x + orig
        if self.attention:
            qkv = Conv2d(3 * c, 1, name="qkv", **_INIT)(group_norm(c, "norm2", _EPS)(x))
            heads = max(1, c // self.channels_per_head)  # EDM: c // 64, with no attention below 64
            x = Conv2d(c, 1, name="proj", **_ZERO)(self_attention(qkv, heads)) + x
        return x


class DhariwalUNet(nn.Module):
    """EDM `DhariwalUNet`: F(x, c_noise, labels) for NHWC images, the interface of `SongUNet`.

    labels int [B] are one-hot rows of `num_classes`; the null label `num_classes` (also used when
    labels is None) is the zero vector, EDM's dropped label. Defaults are EDM's ImageNet-64 ADM.
    """

    model_channels: int = 192
    channel_mult: Sequence[int] = (1, 2, 3, 4)
    channel_mult_emb: int = 4
    num_blocks: int = 3
    attn_resolutions: Sequence[int] = (32, 16, 8)
    dropout: float = 0.10
    num_classes: int = 0
    dtype: jnp.dtype = jnp.float32  # arithmetic dtype; the caller casts parameters and x to it
    remat: bool = False  # recompute each block's activations in the backward pass
    logvar_head: bool = False  # parameters of a LogvarHead named 'logvar' (see `networks.logvar_fn`)

    def _block(self, x: jax.Array, emb: jax.Array, train: bool, name: str, features: int, **kw) -> jax.Array:
        cls = nn.remat(ADMBlock, static_argnums=(3,)) if self.remat else ADMBlock
        return cls(features, dropout=self.dropout, name=name, **kw)(x, emb, train)

    def _embed(self, c_noise: jax.Array, labels: jax.Array | None) -> jax.Array:
        """Mapping network: positional embedding, two layers, + the class embedding (DhariwalUNet)."""
        emb_channels = self.model_channels * self.channel_mult_emb
        emb = embed_times(PositionalEmbedding(self.model_channels, endpoint=False, name="map_noise"), c_noise)
        emb = nn.silu(_dense(emb_channels, self.model_channels, "map_layer0")(emb))
        emb = _dense(emb_channels, emb_channels, "map_layer1")(emb)
        if self.num_classes:
            if labels is None:
                labels = jnp.full(c_noise.shape[:1], self.num_classes, jnp.int32)
            one_hot = jax.nn.one_hot(labels, self.num_classes)  # the null label: all zeros
            map_label = nn.Dense(  # kaiming_normal * sqrt(label_dim): N(0, 1) entries
                emb_channels, use_bias=False, kernel_init=edm_init("kaiming_normal", np.sqrt(self.num_classes)),
                name="map_label",
            )
            emb = emb + map_label(one_hot)
        return nn.silu(emb).astype(self.dtype)  # the embeddings run in float32 (c_noise needs it)

    @nn.compact
    def __call__(
        self, x: jax.Array, c_noise: jax.Array, labels: jax.Array | None = None, *, train: bool = False
    ) -> jax.Array:
        factor = 2 ** (len(self.channel_mult) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"Image size {x.shape[1:3]} must be divisible by {factor}.")
        if self.logvar_head:
            LogvarHead(name="logvar")(first_time(c_noise))  # created here, applied by networks.logvar_fn
        emb = self._embed(c_noise, labels)
        size, out_channels, skips = x.shape[1], x.shape[-1], []
        for level, mult in enumerate(self.channel_mult):  # encoder
            res, width = size >> level, self.model_channels * mult
            tag = f"enc_{res}x{res}"
            if level == 0:
                x = Conv2d(width, 3, name=f"{tag}_conv", **_INIT)(x)
            else:
                x = self._block(x, emb, train, f"{tag}_down", x.shape[-1], down=True)
            skips.append(x)
            for idx in range(self.num_blocks):
                x = self._block(x, emb, train, f"{tag}_block{idx}", width, attention=res in self.attn_resolutions)
                skips.append(x)
        for level, mult in reversed(list(enumerate(self.channel_mult))):  # decoder
            res, width = size >> level, self.model_channels * mult
            tag = f"dec_{res}x{res}"
            if level == len(self.channel_mult) - 1:
                x = self._block(x, emb, train, f"{tag}_in0", x.shape[-1], attention=True)
                x = self._block(x, emb, train, f"{tag}_in1", x.shape[-1])
            else:
                x = self._block(x, emb, train, f"{tag}_up", x.shape[-1], up=True)
            for idx in range(self.num_blocks + 1):
                x = self._block(
                    jnp.concatenate([x, skips.pop()], axis=-1), emb, train, f"{tag}_block{idx}", width,
                    attention=res in self.attn_resolutions,
                )
        x = nn.silu(group_norm(x.shape[-1], "out_norm", _EPS)(x))
        return Conv2d(out_channels, 3, name="out_conv", **_ZERO)(x)
