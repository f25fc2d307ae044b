"""Sample-quality metrics (FID, IS, KID, sliced Wasserstein), sample writing, and the eval run."""

from consistency_jax.evaluation.distribution import sliced_wasserstein
from consistency_jax.evaluation.metrics import (
    extract_features,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_statistics,
)

__all__ = [
    "extract_features",
    "feature_statistics",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "load_statistics",
    "sliced_wasserstein",
]
