"""The Stable Diffusion VAE (KL-f8, diffusers `AutoencoderKL`) in Flax, NHWC, its weights read from
a diffusers `diffusion_pytorch_model.safetensors` with safetensors' NumPy reader (no torch).

Architecture as diffusers builds it (models/autoencoders/autoencoder_kl.py, vae.py `Encoder` and
`Decoder`, unets/unet_2d_blocks.py, resnet.py `ResnetBlock2D`): GroupNorm eps 1e-6 and SiLU
throughout; per level `layers_per_block` ResNet blocks (decoder: one more) with a 1x1
`conv_shortcut` where channels change; the encoder downsamples by a stride-2 3x3 conv after
zero-padding right and bottom by one (downsampling.py, padding=0), the decoder by nearest x2 then
a 3x3 conv (upsampling.py); a mid block ResNet -> single-head self-attention -> ResNet; quant_conv
and post_quant_conv 1x1. Flax module names are diffusers' with `.<i>` written `_<i>`.
"""

import dataclasses
import functools
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict
from safetensors import SafetensorError
from safetensors.numpy import load_file

from consistency_jax.errors import ConfigError
from consistency_jax.networks.autoencoder import Autoencoder
from consistency_jax.networks.pretrained.torch_checkpoint import flax_variables
from consistency_jax.networks.pretrained.weights import CACHE_ENV, WeightsUnavailableError, cache_dir

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
CONFIG_NAME = "config.json"
CACHE_SUBDIR = "sd-vae-ft-mse"  # default: $CONSISTENCY_JAX_CACHE/sd-vae-ft-mse/<WEIGHTS_NAME>
SOURCE = "https://huggingface.co/stabilityai/sd-vae-ft-mse"
NORM_EPS = 1e-6  # vae.py: resnet_eps=1e-6 and GroupNorm(eps=1e-6) everywhere
# diffusers' names before its attention refactor, renamed on load (modeling_utils.py
# `_fix_state_dict_keys_on_load`); stabilityai/sd-vae-ft-mse still ships them.
LEGACY_ATTENTION_NAMES = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
# The diffusers config.json settings this port implements (any other value is refused).
FIXED_SETTINGS = {
    "act_fn": "silu",
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
    "shift_factor": None,
    "latents_mean": None,
    "latents_std": None,
}


class VAEWeightsError(ConfigError):
    """A VAE weight file or config that does not fit: another architecture, a missing or
    mis-shaped tensor, a setting this port does not implement."""


@dataclasses.dataclass(frozen=True)
class SDVAEConfig:
    """diffusers `AutoencoderKL` config keys; defaults are SD 1.x/2.x (REFERENCE.md 12.D)."""

    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    in_channels: int = 3
    out_channels: int = 3
    scaling_factor: float = 0.18215

    def __post_init__(self):
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        groups = self.norm_num_groups
        bad = groups < 1 or any(c % groups for c in self.block_out_channels) or not self.block_out_channels
        if bad or self.layers_per_block < 1 or self.latent_channels < 1:
            raise VAEWeightsError(
                f"SD VAE config {self}: block_out_channels must be a non-empty list of multiples of "
                f"norm_num_groups, layers_per_block and latent_channels at least 1."
            )

    @property
    def downsample(self) -> int:
        """Image side / latent side: one stride-2 step per level but the last."""
        return 2 ** (len(self.block_out_channels) - 1)


def _group_norm(groups: int, name: str) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, epsilon=NORM_EPS, use_fast_variance=False, name=name)


def _conv(features: int, kernel: int, name: str) -> nn.Conv:
    """torch Conv2d(kernel, stride 1, padding kernel // 2)."""
    return nn.Conv(features, (kernel, kernel), padding=kernel // 2, name=name)


class ResnetBlock2D(nn.Module):
    """diffusers `ResnetBlock2D` without time embedding: x + conv2(silu(norm2(conv1(silu(norm1(x))))))."""

    features: int
    groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = _conv(self.features, 3, "conv1")(nn.silu(_group_norm(self.groups, "norm1")(x)))
        h = _conv(self.features, 3, "conv2")(nn.silu(_group_norm(self.groups, "norm2")(h)))
        if x.shape[-1] != self.features:
            x = _conv(self.features, 1, "conv_shortcut")(x)
        return x + h


class Attention(nn.Module):
    """The mid block's single-head self-attention over pixels, with group norm and residual
    (diffusers `Attention` with heads = channels // attention_head_dim = 1, `AttnProcessor2_0`)."""

    groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        t = _group_norm(self.groups, "group_norm")(x).reshape(b, h * w, 1, c)
        q, k, v = (nn.Dense(c, name=name)(t) for name in ("to_q", "to_k", "to_v"))
        a = jax.nn.dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(c)) v
        return x + nn.Dense(c, name="to_out_0")(a).reshape(b, h, w, c)


class UNetMidBlock2D(nn.Module):
    groups: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        x = ResnetBlock2D(c, self.groups, name="resnets_0")(x)
        x = Attention(self.groups, name="attentions_0")(x)
        return ResnetBlock2D(c, self.groups, name="resnets_1")(x)


class Downsample2D(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 conv (diffusers, padding=0)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(x.shape[-1], (3, 3), strides=2, padding=((0, 1), (0, 1)), name="conv")(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return _conv(x.shape[-1], 3, "conv")(x)


class DownEncoderBlock2D(nn.Module):
    features: int
    groups: int
    num_layers: int
    add_downsample: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.num_layers):
            x = ResnetBlock2D(self.features, self.groups, name=f"resnets_{j}")(x)
        return Downsample2D(name="downsamplers_0")(x) if self.add_downsample else x


class Encoder(nn.Module):
    """Images -> the posterior's moments (mean, log-variance) [B, H/f, W/f, 2 * latent_channels]."""

    config: SDVAEConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg, groups = self.config, self.config.norm_num_groups
        x = _conv(cfg.block_out_channels[0], 3, "conv_in")(x)
        for i, c in enumerate(cfg.block_out_channels):
            x = DownEncoderBlock2D(
                c, groups, cfg.layers_per_block, i < len(cfg.block_out_channels) - 1, name=f"down_blocks_{i}"
            )(x)
        x = UNetMidBlock2D(groups, name="mid_block")(x)
        x = nn.silu(_group_norm(groups, "conv_norm_out")(x))
        return _conv(2 * cfg.latent_channels, 3, "conv_out")(x)


class UpDecoderBlock2D(nn.Module):
    features: int
    groups: int
    num_layers: int
    add_upsample: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for j in range(self.num_layers):
            x = ResnetBlock2D(self.features, self.groups, name=f"resnets_{j}")(x)
        return Upsample2D(name="upsamplers_0")(x) if self.add_upsample else x


class Decoder(nn.Module):
    """Latents (after post_quant_conv) -> images."""

    config: SDVAEConfig

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        cfg, groups = self.config, self.config.norm_num_groups
        channels = cfg.block_out_channels[::-1]
        x = _conv(channels[0], 3, "conv_in")(z)
        x = UNetMidBlock2D(groups, name="mid_block")(x)
        for i, c in enumerate(channels):
            x = UpDecoderBlock2D(c, groups, cfg.layers_per_block + 1, i < len(channels) - 1, name=f"up_blocks_{i}")(x)
        x = nn.silu(_group_norm(groups, "conv_norm_out")(x))
        return _conv(cfg.out_channels, 3, "conv_out")(x)


class AutoencoderKL(nn.Module):
    """diffusers `AutoencoderKL`: `encode` -> posterior mean (`latent_dist.mean`), `decode` ->
    images (`decode(z).sample`); calling it reconstructs through the mean."""

    config: SDVAEConfig

    def setup(self):
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.quant_conv = _conv(2 * self.config.latent_channels, 1, "quant_conv")
        self.post_quant_conv = _conv(self.config.latent_channels, 1, "post_quant_conv")

    def encode(self, images: jax.Array) -> jax.Array:
        moments = self.quant_conv(self.encoder(images))
        return moments[..., : self.config.latent_channels]  # DiagonalGaussianDistribution: mean, logvar

    def decode(self, latents: jax.Array) -> jax.Array:
        return self.decoder(self.post_quant_conv(latents))

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.decode(self.encode(images))


def _flax_key(key: str) -> str:
    """diffusers tensor name -> the dotted Flax path: `down_blocks.0.resnets.1` -> `down_blocks_0.resnets_1`."""
    return re.sub(r"\.(\d+)(?=\.)", r"_\1", key)


_TORCH_AXES = {4: (3, 2, 0, 1), 2: (1, 0), 1: (0,)}  # Flax HWIO, (in, out), (C,) -> torch OIHW, (out, in), (C,)


def _diffusers_name(flax_path: tuple[str, ...]) -> str:
    """A Flax param path -> its diffusers tensor name: (`mid_block`, `attentions_0`, `to_out_0`, `kernel`)
    -> `mid_block.attentions.0.to_out.0.weight`."""
    *modules, leaf = flax_path
    name = ".".join(re.sub(r"_(\d+)$", r".\1", m) for m in modules)
    return f"{name}.{'bias' if leaf == 'bias' else 'weight'}"


@functools.cache
def expected_tensors(config: SDVAEConfig) -> dict[str, tuple[int, ...]]:
    """The diffusers tensor names and (torch) shapes of `AutoencoderKL` under `config`."""
    model = AutoencoderKL(config)
    dummy = jnp.zeros((1, 2 * config.downsample, 2 * config.downsample, config.in_channels))
    shapes = jax.eval_shape(model.init, jax.random.key(0), dummy)["params"]
    tensors = {}
    for path, leaf in flatten_dict(shapes).items():
        tensors[_diffusers_name(path)] = tuple(leaf.shape[a] for a in _TORCH_AXES[leaf.ndim])
    return tensors


def _rename_legacy(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Mid-block attention tensors under diffusers' legacy names (query, key, value, proj_attn)."""
    renamed = {}
    for key, value in tensors.items():
        prefix, _, rest = key.partition(".attentions.0.")
        parts = rest.split(".")
        if rest and parts[0] in LEGACY_ATTENTION_NAMES:
            key = f"{prefix}.attentions.0.{LEGACY_ATTENTION_NAMES[parts[0]]}.{'.'.join(parts[1:])}"
        renamed[key] = value
    return renamed


def _listed(names: Iterable[str], limit: int = 5) -> str:
    names = sorted(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_tensors(tensors: dict[str, np.ndarray], config: SDVAEConfig, path: Path) -> None:
    """Raise `VAEWeightsError` naming the first problem: another layout or architecture, missing,
    mis-shaped or unexpected tensors."""
    expected = expected_tensors(config)
    if any(k.startswith(("encoder.down.", "first_stage_model.")) for k in tensors):
        raise VAEWeightsError(
            f"{path} is in the original LDM layout (encoder.down.*, first_stage_model.*), not diffusers'; "
            f"give a diffusers {WEIGHTS_NAME} (e.g. from {SOURCE})."
        )
    if not expected.keys() & tensors.keys():
        raise VAEWeightsError(
            f"{path} is not a diffusers AutoencoderKL weight file: it has none of its tensors (it "
            f"holds {_listed(tensors)}). Give the VAE's own file (the vae/{WEIGHTS_NAME} of a "
            f"diffusers Stable Diffusion pipeline, or {SOURCE})."
        )
    missing = expected.keys() - tensors.keys()
    if missing:
        raise VAEWeightsError(
            f"{path} lacks the SD VAE tensors {_listed(missing)}. Is the {CONFIG_NAME} beside it (or the "
            f"config given) the one it was saved with?"
        )
    for name, shape in expected.items():
        if tensors[name].shape != shape:
            raise VAEWeightsError(
                f"{path}: tensor {name} has shape {tensors[name].shape}, the SD VAE config {config} "
                f"needs {shape}; give the {CONFIG_NAME} the file was saved with."
            )
    unexpected = tensors.keys() - expected.keys()
    if unexpected:
        raise VAEWeightsError(
            f"{path} holds tensors an AutoencoderKL under {config} does not have: {_listed(unexpected)}."
        )


def config_from_json(path: Path) -> SDVAEConfig:
    """An `SDVAEConfig` from a diffusers `AutoencoderKL` config.json, refusing settings this port
    does not implement."""
    with open(path) as f:
        raw = json.load(f)
    if raw.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        raise VAEWeightsError(f"{path} configures {raw['_class_name']}, not AutoencoderKL.")
    levels = len(raw.get("block_out_channels", SDVAEConfig.block_out_channels))
    block_types = {
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
    }
    for key, supported in {**FIXED_SETTINGS, **block_types}.items():
        if key in raw and raw[key] != supported:
            raise VAEWeightsError(
                f"{path}: {key}={raw[key]!r} is not supported by the SD VAE port (only {supported!r})."
            )
    fields = {f.name for f in dataclasses.fields(SDVAEConfig)}
    return SDVAEConfig(**{k: v for k, v in raw.items() if k in fields})


def sd_vae_params(path: str | Path, config: SDVAEConfig) -> dict:
    """The Flax params of `AutoencoderKL(config)` from a diffusers safetensors file, checked
    tensor by tensor."""
    path = Path(path)
    try:
        tensors = _rename_legacy(load_file(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise VAEWeightsError(f"{path} cannot be read as a safetensors file ({error}).") from None
    check_tensors(tensors, config, path)
    state = {_flax_key(k): v.astype(np.float32) for k, v in tensors.items()}
    return jax.tree.map(jnp.asarray, flax_variables(state)["params"])


def default_weights_path() -> Path:
    """$CONSISTENCY_JAX_CACHE (else ~/.cache/consistency_jax) / sd-vae-ft-mse / diffusion_pytorch_model.safetensors."""
    return cache_dir() / CACHE_SUBDIR / WEIGHTS_NAME


def _weights_path(path: str | Path | None) -> Path:
    """The weight file: `path` (a file, or a diffusers `vae/` folder), else the cache's copy."""
    target = default_weights_path() if path is None else Path(path)
    target = target / WEIGHTS_NAME if target.is_dir() else target
    if not target.is_file():
        where = f"it was given as {path}" if path is not None else f"put them in {target.parent}"
        raise WeightsUnavailableError(
            f"No Stable Diffusion VAE weights at {target}. Download {WEIGHTS_NAME} and {CONFIG_NAME} from "
            f"{SOURCE} (or the vae/ folder of a diffusers Stable Diffusion pipeline) and {where}; or set "
            f"${CACHE_ENV} to a folder holding {CACHE_SUBDIR}/, or pass the file's path."
        )
    return target


@functools.partial(jax.jit, static_argnames="config")
def sd_vae_encode(params: dict, images: jax.Array, config: SDVAEConfig) -> jax.Array:
    """NHWC images in [-1, 1] -> unscaled posterior means [B, H/f, W/f, latent_channels]."""
    with jax.default_matmul_precision("highest"):  # full float32 convolutions on GPU/TPU too
        return AutoencoderKL(config).apply({"params": params}, images, method="encode")


@functools.partial(jax.jit, static_argnames="config")
def sd_vae_decode(params: dict, latents: jax.Array, config: SDVAEConfig) -> jax.Array:
    """Unscaled NHWC latents -> NHWC images (about [-1, 1])."""
    with jax.default_matmul_precision("highest"):
        return AutoencoderKL(config).apply({"params": params}, latents, method="decode")


def _checked(fn: Callable, config: SDVAEConfig, channels: int, what: str) -> Callable:
    """`fn(params, x, config=config)`, refusing x that is not NHWC with `channels` channels."""

    def call(params: dict, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != channels:
            raise ConfigError(f"The SD VAE takes NHWC {what} with {channels} channels; got shape {tuple(x.shape)}.")
        return fn(params, x, config=config)

    return call


def load_sd_vae_autoencoder(path: str | Path | None = None, config: SDVAEConfig | None = None) -> Autoencoder:
    """The SD VAE as an `Autoencoder`: jitted `encode` (NHWC images in [-1, 1] -> unscaled posterior
    means) and `decode` (unscaled latents -> images), the scaling factor, latent channels, downsampling.

    Weights: `path` (a diffusers `diffusion_pytorch_model.safetensors`, or the folder holding it),
    else `$CONSISTENCY_JAX_CACHE/sd-vae-ft-mse/diffusion_pytorch_model.safetensors`; a missing file
    raises `WeightsUnavailableError` saying where to put it. Architecture and scaling factor:
    `config`, else the `config.json` beside the weights, else SD 1.x/2.x's.
    """
    weights = _weights_path(path)
    if config is None:
        json_path = weights.parent / CONFIG_NAME
        config = config_from_json(json_path) if json_path.is_file() else SDVAEConfig()
    params = sd_vae_params(weights, config)
    return Autoencoder(
        encode_fn=_checked(sd_vae_encode, config, config.in_channels, "images"),
        decode_fn=_checked(sd_vae_decode, config, config.latent_channels, "latents"),
        params=params,
        scaling_factor=config.scaling_factor,
        latent_channels=config.latent_channels,
        downsample=config.downsample,
    )


def load_sd_vae(path: str | Path | None = None, config: SDVAEConfig | None = None) -> tuple[Callable, Callable]:
    """(encode, decode) of `load_sd_vae_autoencoder(path, config)`: encode takes NHWC images in
    [-1, 1] to unscaled posterior means (diffusers' `latent_dist.mean`), decode takes unscaled NHWC
    latents to images (diffusers' `decode(z).sample`)."""
    vae = load_sd_vae_autoencoder(path, config)
    return vae.encode, vae.decode
