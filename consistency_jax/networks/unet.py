"""EDM's `SongUNet` (NVlabs/edm training/networks.py) in Flax, NHWC: DDPM++ and NCSN++."""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from consistency_jax.networks.layers import LogvarHead, add_guidance, embed_times, first_time, noise_embedding

_SKIP_SCALE = float(np.sqrt(0.5))  # EDM SongUNet block_kwargs skip_scale


_INIT_MODES = {  # EDM `weight_init`: mode -> (fan, distribution) of a unit-scale variance_scaling
    "xavier_uniform": ("fan_avg", "uniform"),
    "kaiming_uniform": ("fan_in", "uniform"),
    "kaiming_normal": ("fan_in", "normal"),
}


def edm_init(mode: str = "xavier_uniform", init_weight: float = 1.0) -> nn.initializers.Initializer:
    """EDM `weight_init(shape, mode, fan_in, fan_out) * init_weight` (networks.py)."""
    fan, distribution = _INIT_MODES[mode]
    return nn.initializers.variance_scaling(init_weight**2, fan, distribution)


def edm_bias_init(mode: str, fan_in: int, init_bias: float) -> nn.initializers.Initializer:
    """EDM's bias: the weight's distribution at the layer's fan-in, times `init_bias`."""
    if not init_bias:
        return nn.initializers.zeros
    std = init_bias / np.sqrt(fan_in)
    if mode == "kaiming_normal":
        return nn.initializers.normal(std)
    if mode != "kaiming_uniform":
        raise ValueError(f"EDM draws no {mode} bias; its xavier layers start their biases at 0.")
    return lambda key, shape, dtype=jnp.float32: std * np.sqrt(3) * jax.random.uniform(key, shape, dtype, -1, 1)


def _label_init(num_classes: int) -> nn.initializers.Initializer:
    """EDM's `map_label` Linear as embedding rows: sqrt(L)·W[:, i]; the null row is its bias, 0."""

    def init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
        bound = np.sqrt(6 / (num_classes + shape[1])) * np.sqrt(num_classes)
        rows = jax.random.uniform(key, (num_classes, shape[1]), dtype, -bound, bound)
        return jnp.concatenate([rows, jnp.zeros((1, shape[1]), dtype)])

    return init


def _pad_hw(x: jax.Array, pad: int) -> jax.Array:
    """Zero-pad H and W by `pad` on each side (NHWC)."""
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def conv2d(x: jax.Array, w: jax.Array, pad: int) -> jax.Array:
    """Stride-1 conv zero-padded by `pad` on each side (NHWC, HWIO); padding beyond kernel // 2
    goes in by jnp.pad first, as XLA's CPU kernel gradient of a conv padded wider than that
    leaves its fast path (docs/performance.md, benchmarks/conv_grad.py --pad=2)."""
    same = min(pad, w.shape[0] // 2)
    x = _pad_hw(x, pad - same) if pad > same else x
    return jax.lax.conv_general_dilated(
        x, w, (1, 1), [(same, same)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _filter_hw(x: jax.Array, taps: Sequence[float], stride: int) -> jax.Array:
    """Correlate H and W with the 1-D taps (no padding), then keep every `stride`-th output:
    the separable depthwise filter outer(f, f) as strided slices and sums, not a grouped conv,
    which XLA's CPU backend runs far below dense-convolution speed (docs/performance.md)."""
    for axis in (1, 2):
        n = (x.shape[axis] - len(taps)) // stride + 1
        x = sum(
            t * jax.lax.slice_in_dim(x, i, i + stride * (n - 1) + 1, stride, axis)
            for i, t in enumerate(taps)
        )
    return x


def downsample(x: jax.Array, taps: Sequence[float], pad: int | None = None) -> jax.Array:
    """Filter outer(f, f) / sum(f)^2 with stride 2 (EDM `Conv2d` down: depthwise conv,
    padding (len(f) - 1) // 2 unless given)."""
    pad = (len(taps) - 1) // 2 if pad is None else pad
    return _filter_hw(_pad_hw(x, pad), [t / sum(taps) for t in taps], 2)


def upsample(x: jax.Array, taps: Sequence[float]) -> jax.Array:
    """Zero-insert and filter with outer(f, f) · 4 / sum(f)^2 (EDM `Conv2d` up: conv_transpose2d,
    stride 2; the flipped filter of the transposed conv is the same, f being symmetric)."""
    edge = len(taps) - 1 - (len(taps) - 1) // 2
    zero = jnp.zeros((), x.dtype)
    x = jax.lax.pad(x, zero, ((0, 0, 0), (edge, edge, 1), (edge, edge, 1), (0, 0, 0)))
    return _filter_hw(x, [2 * t / sum(taps) for t in taps], 1)


class Conv2d(nn.Module):
    """EDM `Conv2d`: a k×k conv with optional up/down resampling by a FIR filter."""

    features: int
    kernel: int
    up: bool = False
    down: bool = False
    fused: bool = False  # EDM fused_resample (down only): conv at full resolution, then filter
    resample_filter: Sequence[float] = (1, 1)
    init_weight: float = 1.0
    init_mode: str = "xavier_uniform"
    init_bias: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (self.kernel, self.kernel, x.shape[-1], self.features)
        w = self.param("kernel", edm_init(self.init_mode, self.init_weight), shape)
        fan_in = self.kernel * self.kernel * x.shape[-1]
        b = self.param("bias", edm_bias_init(self.init_mode, fan_in, self.init_bias), (self.features,))
        if self.fused:  # EDM Conv2d.forward, fused_resample and down
            x = conv2d(x, w, self.kernel // 2 + (len(self.resample_filter) - 1) // 2)
            return downsample(x, self.resample_filter, pad=0) + b
        if self.up:
            x = upsample(x, self.resample_filter)
        if self.down:
            x = downsample(x, self.resample_filter)
        return conv2d(x, w, self.kernel // 2) + b


def group_norm(channels: int, name: str, eps: float = 1e-6) -> nn.GroupNorm:
    """EDM `GroupNorm`: min(32, C // 4) groups; eps 1e-6 as SongUNet passes it (ADM: 1e-5)."""
    return nn.GroupNorm(num_groups=min(32, channels // 4), epsilon=eps, name=name)


def pixel_norm(v: jax.Array, eps: float = 1e-4) -> jax.Array:
    """v over its root mean square across channels (the last axis), EDM2's `normalize` (eq. 10)."""
    return v / (eps + jnp.sqrt(jnp.mean(jnp.square(v), axis=-1, keepdims=True)))


def self_attention(qkv: jax.Array, num_heads: int) -> jax.Array:
    """Self-attention over pixels of qkv [B, H, W, 3C], its channels laid out as EDM's
    (heads, C / heads, 3); softmax(q k^T / sqrt(C / heads)) v -> [B, H, W, C] (EDM `AttentionOp`)."""
    b, h, w, c3 = qkv.shape
    c = c3 // 3
    qkv = qkv.reshape(b, h * w, num_heads, c // num_heads, 3)
    a = jax.nn.dot_product_attention(qkv[..., 0], qkv[..., 1], qkv[..., 2])
    return a.reshape(b, h, w, c)


class UNetBlock(nn.Module):
    """EDM `UNetBlock` as SongUNet sets it up: additive embedding, resample_proj, one head."""

    features: int
    up: bool = False
    down: bool = False
    attention: bool = False
    num_heads: int = 1  # SongUNet block_kwargs num_heads=1
    dropout: float = 0.0
    resample_filter: Sequence[float] = (1, 1)
    double_norm: bool = False  # sCM's adaptive double normalization instead of the added embedding

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, train: bool) -> jax.Array:
        c = self.features
        resample = {"up": self.up, "down": self.down, "resample_filter": self.resample_filter}
        orig = x
        x = Conv2d(c, 3, **resample, name="conv0")(nn.silu(group_norm(x.shape[-1], "norm0")(x)))
        if self.double_norm:  # norm(x) pnorm(s(t)) + pnorm(b(t)) (sCM Sec. 4.1)
            affine = nn.Dense(2 * c, kernel_init=edm_init(), name="affine")(emb)[:, None, None, :]
            scale, shift = jnp.split(affine, 2, axis=-1)
            x = nn.silu(group_norm(c, "norm1")(x) * pixel_norm(scale) + pixel_norm(shift))
        else:
            x = x + nn.Dense(c, kernel_init=edm_init(), name="affine")(emb)[:, None, None, :]
            x = nn.silu(group_norm(c, "norm1")(x))  # EDM adaptive_scale=False
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = Conv2d(c, 3, init_weight=1e-5, name="conv1")(x)
        if c != orig.shape[-1] or self.up or self.down:  # resample_proj=True: always a 1x1 conv
            orig = Conv2d(c, 1, **resample, name="skip")(orig)
        x = (x + orig) * _SKIP_SCALE
        if self.attention:
            x = (Conv2d(c, 1, init_weight=1e-5, name="proj")(self._attend(x)) + x) * _SKIP_SCALE
        return x

    def _attend(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        qkv = Conv2d(3 * c, 1, init_weight=float(np.sqrt(0.2)), name="qkv")(group_norm(c, "norm2")(x))
        return self_attention(qkv, self.num_heads)


class SongUNet(nn.Module):
    """EDM `SongUNet`: F(x, c_noise, labels) for NHWC images x [B, H, W, C] -> [B, H, W, C].

    Same interface as `MLP`: x already scaled by c_in, c_noise [B] (or [B, K], embeddings summed),
    labels int [B] indexing `num_classes + 1` rows (the last the null label, used when labels is None),
    guidance w where `guidance_embedding` (LCM's w-embedding); dropout draws
    from the 'dropout' rng when train=True. Resolution and channels come from x.
    """

    model_channels: int = 128
    channel_mult: Sequence[int] = (2, 2, 2)
    channel_mult_emb: int = 4
    num_blocks: int = 4
    attn_resolutions: Sequence[int] = (16,)
    dropout: float = 0.10
    channel_mult_noise: int = 1
    embedding_type: str = "positional"
    fourier_scale: float = 16.0
    encoder_type: str = "standard"  # 'standard' (DDPM++) | 'residual' (NCSN++)
    decoder_type: str = "standard"  # 'standard' (both)
    resample_filter: Sequence[float] = (1, 1)
    num_classes: int = 0
    dtype: jnp.dtype = jnp.float32  # arithmetic dtype; the caller casts parameters and x to it
    remat: bool = False  # recompute each block's activations in the backward pass
    logvar_head: bool = False  # parameters of a LogvarHead named 'logvar' (see `networks.logvar_fn`)
    guidance_embedding: bool = False  # takes the guidance scale w (layers.GuidanceEmbedding)
    double_norm: bool = False  # UNetBlock.double_norm (sCM Sec. 4.1)

    def _block(
        self, x: jax.Array, emb: jax.Array, train: bool, name: str, features: int, **kw
    ) -> jax.Array:
        # static_argnums counts self: (self, x, emb, train) -> train is 3
        cls = nn.remat(UNetBlock, static_argnums=(3,)) if self.remat else UNetBlock
        block = cls(
            features, dropout=self.dropout, resample_filter=self.resample_filter,
            double_norm=self.double_norm, name=name, **kw,
        )
        return block(x, emb, train)

    def _embed(self, c_noise: jax.Array, labels: jax.Array | None, guidance: jax.Array | None) -> jax.Array:
        """Mapping network: noise embedding (+ class, + w embedding), two SiLU layers (EDM SongUNet)."""
        noise_channels = self.model_channels * self.channel_mult_noise
        emb_channels = self.model_channels * self.channel_mult_emb
        map_noise = noise_embedding(self.embedding_type, noise_channels, self.fourier_scale)
        emb = embed_times(map_noise.clone(parent=self, name="map_noise"), c_noise)
        emb = jnp.concatenate(jnp.split(emb, 2, axis=-1)[::-1], axis=-1)  # EDM: swap sin/cos
        if self.num_classes:
            if labels is None:
                labels = jnp.full(c_noise.shape[:1], self.num_classes, jnp.int32)
            label_init = _label_init(self.num_classes)
            map_label = nn.Embed(
                self.num_classes + 1, noise_channels, embedding_init=label_init, name="map_label"
            )
            emb = emb + map_label(labels)
        emb = add_guidance(emb, guidance, self.guidance_embedding)
        emb = nn.silu(nn.Dense(emb_channels, kernel_init=edm_init(), name="map_layer0")(emb))
        emb = nn.silu(nn.Dense(emb_channels, kernel_init=edm_init(), name="map_layer1")(emb))
        return emb.astype(self.dtype)  # the embeddings run in float32 (c_noise needs it)

    def _encode(
        self, x: jax.Array, emb: jax.Array, train: bool
    ) -> tuple[jax.Array, list[jax.Array]]:
        """EDM SongUNet encoder; returns the last output and every non-aux output (the skips)."""
        size, skips, aux = x.shape[1], [], x
        for level, mult in enumerate(self.channel_mult):
            res = size >> level
            tag = f"enc_{res}x{res}"
            if level == 0:
                x = Conv2d(self.model_channels, 3, name=f"{tag}_conv")(x)
            else:
                x = self._block(x, emb, train, f"{tag}_down", x.shape[-1], down=True)
                if self.encoder_type == "residual":  # NCSN++ progressive input, combined by sum
                    aux_residual = Conv2d(
                        x.shape[-1], 3, down=True, fused=True,
                        resample_filter=self.resample_filter, name=f"{tag}_aux_residual",
                    )
                    x = aux = (x + aux_residual(aux)) / float(np.sqrt(2))  # a weak scalar keeps the dtype
            skips.append(x)
            for idx in range(self.num_blocks):
                x = self._block(
                    x, emb, train, f"{tag}_block{idx}", self.model_channels * mult,
                    attention=res in self.attn_resolutions,
                )
                skips.append(x)
        return x, skips

    def _decode(
        self, x: jax.Array, skips: list[jax.Array], emb: jax.Array, train: bool, size: int,
        out_channels: int,
    ) -> jax.Array:
        """EDM SongUNet decoder, 'standard': one aux_norm/aux_conv output head at `size`."""
        for level, mult in reversed(list(enumerate(self.channel_mult))):
            res = size >> level
            tag = f"dec_{res}x{res}"
            if level == len(self.channel_mult) - 1:
                x = self._block(x, emb, train, f"{tag}_in0", x.shape[-1], attention=True)
                x = self._block(x, emb, train, f"{tag}_in1", x.shape[-1])
            else:
                x = self._block(x, emb, train, f"{tag}_up", x.shape[-1], up=True)
            for idx in range(self.num_blocks + 1):
                x = self._block(
                    jnp.concatenate([x, skips.pop()], axis=-1), emb, train, f"{tag}_block{idx}",
                    self.model_channels * mult,
                    attention=idx == self.num_blocks and res in self.attn_resolutions,
                )
        x = nn.silu(group_norm(x.shape[-1], f"{tag}_aux_norm")(x))
        return Conv2d(out_channels, 3, init_weight=1e-5, name=f"{tag}_aux_conv")(x)

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        c_noise: jax.Array,
        labels: jax.Array | None = None,
        guidance: jax.Array | None = None,
        *,
        train: bool = False,
    ) -> jax.Array:
        if self.encoder_type not in ("standard", "residual") or self.decoder_type != "standard":
            raise ValueError(
                "SongUNet supports encoder_type 'standard'|'residual' and decoder_type "
                f"'standard'; got {self.encoder_type!r}, {self.decoder_type!r}."
            )
        factor = 2 ** (len(self.channel_mult) - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"Image size {x.shape[1:3]} must be divisible by {factor}.")
        if self.logvar_head:
            LogvarHead(name="logvar")(first_time(c_noise))  # created here, applied by networks.logvar_fn
        emb = self._embed(c_noise, labels, guidance)
        h, skips = self._encode(x, emb, train)
        return self._decode(h, skips, emb, train, x.shape[1], x.shape[-1])
