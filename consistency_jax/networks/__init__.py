"""Networks F(x, c_noise, labels, train=...): the registry `config.network.name` -> Flax module,
and the mixed-precision application every parametrization wraps."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from consistency_jax.networks.adm import DhariwalUNet
from consistency_jax.networks.autoencoder import ConvAutoencoder
from consistency_jax.networks.layers import LogvarHead
from consistency_jax.networks.mlp import MLP
from consistency_jax.networks.unet import SongUNet

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(cfg: ml_collections.ConfigDict) -> jnp.dtype:
    """config.network.compute_dtype as a dtype."""
    if cfg.compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"config.network.compute_dtype={cfg.compute_dtype!r} is not known; choose one of "
            f"{sorted(COMPUTE_DTYPES)}."
        )
    return COMPUTE_DTYPES[cfg.compute_dtype]


def _embedding_type(cfg: ml_collections.ConfigDict, default: str) -> str:
    return default if cfg.embedding_type == "auto" else cfg.embedding_type


def _mlp(cfg: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    return MLP(
        hidden=cfg.mlp.hidden,
        depth=cfg.mlp.depth,
        emb_dim=cfg.mlp.emb_dim,
        dropout=cfg.dropout,
        embedding_type=_embedding_type(cfg, "positional"),
        fourier_scale=cfg.fourier_scale,
        num_classes=num_classes,
        dtype=compute_dtype(cfg),
        logvar_head=cfg.logvar_head,
        guidance_embedding=cfg.guidance_embedding,
    )


def _song_unet(cfg: ml_collections.ConfigDict, num_classes: int, **arch) -> nn.Module:
    u = cfg.unet
    return SongUNet(
        model_channels=u.model_channels,
        channel_mult=tuple(u.channel_mult),
        channel_mult_emb=u.channel_mult_emb,
        num_blocks=u.num_blocks,
        attn_resolutions=tuple(u.attn_resolutions),
        dropout=cfg.dropout,
        fourier_scale=cfg.fourier_scale,
        num_classes=num_classes,
        dtype=compute_dtype(cfg),
        remat=cfg.remat,
        logvar_head=cfg.logvar_head,
        guidance_embedding=cfg.guidance_embedding,
        double_norm=u.double_norm,
        **arch,
    )


def _ddpmpp(cfg: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """DDPM++ (EDM `--arch=ddpmpp`)."""
    return _song_unet(
        cfg, num_classes, embedding_type=_embedding_type(cfg, "positional"), channel_mult_noise=1,
        resample_filter=(1, 1), encoder_type="standard", decoder_type="standard",
    )


def _ncsnpp(cfg: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """NCSN++ (EDM `--arch=ncsnpp`)."""
    return _song_unet(
        cfg, num_classes, embedding_type=_embedding_type(cfg, "fourier"), channel_mult_noise=2,
        resample_filter=(1, 3, 3, 1), encoder_type="residual", decoder_type="standard",
    )


def _adm(cfg: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """ADM (EDM `DhariwalUNet`, `--arch=adm`); its embedding is always positional."""
    u = cfg.unet
    return DhariwalUNet(
        model_channels=u.model_channels, channel_mult=tuple(u.channel_mult), channel_mult_emb=u.channel_mult_emb,
        num_blocks=u.num_blocks, attn_resolutions=tuple(u.attn_resolutions), dropout=cfg.dropout,
        num_classes=num_classes, dtype=compute_dtype(cfg), remat=cfg.remat, logvar_head=cfg.logvar_head,
        guidance_embedding=cfg.guidance_embedding,
    )


def _autoencoder(cfg: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
    """The conv autoencoder an autoencoder run trains (labels unused)."""
    a = cfg.autoencoder
    return ConvAutoencoder(channels=a.channels, latent_channels=a.latent_channels, downsample=a.downsample)


NETWORKS: dict[str, Callable[[ml_collections.ConfigDict, int], nn.Module]] = {
    "mlp": _mlp,
    "ddpmpp": _ddpmpp,
    "ncsnpp": _ncsnpp,
    "adm": _adm,
    "autoencoder": _autoencoder,
}


def build_network(cfg: ml_collections.ConfigDict, num_classes: int = 0) -> nn.Module:
    """The network named by `cfg.name` (config.network), with `num_classes` labels (0: none)."""
    if cfg.name not in NETWORKS:
        raise ValueError(
            f"Unknown network {cfg.name!r} (config.network.name); choose one of {sorted(NETWORKS)}."
        )
    return NETWORKS[cfg.name](cfg, num_classes)


def apply_network(
    model: nn.Module, params: Any, x: jax.Array, c_noise: jax.Array, labels: jax.Array | None,
    *, train: bool, rngs: dict, guidance: jax.Array | None = None,
) -> jax.Array:
    """F(x, c_noise, labels[, guidance]) in the model's compute dtype from float32 parameters;
    float32 out. The guidance scale w is passed only when given (a network with a w-embedding).

    Mixed precision: parameters and x are cast on the way in (their gradients come back float32),
    c_noise stays float32 for the noise embedding, and the output is cast back before the
    parametrization's skip connection and the loss.
    """
    dtype = getattr(model, "dtype", jnp.float32)  # a user's module may have no dtype field
    if dtype != jnp.float32:
        params = jax.tree.map(lambda p: p.astype(dtype), params)
        x = x.astype(dtype)
    extra = {"guidance": guidance} if guidance is not None else {}
    out = model.apply({"params": params}, x, c_noise, labels, train=train, rngs=rngs, **extra)
    return out.astype(jnp.float32)


def network_fn(
    model: nn.Module, params: Any, labels: jax.Array | None = None, *, train: bool = False,
    dropout_key: jax.Array | None = None, guidance: jax.Array | None = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """F(x, c_noise) of `model` at `params` for these labels (None: the null label of a
    conditional network) and guidance scale w (a network with a w-embedding only): the callable
    the parametrizations in `consistency_jax.core.parametrization` wrap; dropout from
    `dropout_key` when train=True."""
    rngs = {"dropout": dropout_key} if dropout_key is not None else {}
    return lambda x, c_noise: apply_network(
        model, params, x, c_noise, labels, train=train, rngs=rngs, guidance=guidance
    )


def logvar_fn(model: nn.Module, params: Any) -> Callable[[jax.Array], jax.Array]:
    """t [B] -> w_phi(t) [B] of a network built with logvar_head=True (its 'logvar' parameters)."""
    if "logvar" not in params:
        raise ValueError(
            "The network has no loss-weighting head: build it with config.network.logvar_head=True."
        )
    return lambda t: LogvarHead().apply({"params": params["logvar"]}, jnp.asarray(t, jnp.float32))
