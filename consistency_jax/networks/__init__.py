"""Network registry: `config.network.name` -> a Flax module F(x, c_noise, labels, train=...)."""

from collections.abc import Callable

import flax.linen as nn
import ml_collections

from consistency_jax.networks.mlp import MLP


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
    )


NETWORKS: dict[str, Callable[[ml_collections.ConfigDict, int], nn.Module]] = {"mlp": _mlp}


def build_network(cfg: ml_collections.ConfigDict, num_classes: int = 0) -> nn.Module:
    """The network named by `cfg.name` (config.network), with `num_classes` labels (0: none)."""
    if cfg.name not in NETWORKS:
        raise ValueError(
            f"Unknown network {cfg.name!r} (config.network.name); choose one of {sorted(NETWORKS)}."
        )
    return NETWORKS[cfg.name](cfg, num_classes)
