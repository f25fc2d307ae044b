"""Evaluation networks (FID Inception-v3, LPIPS, the digits classifier) and sample-quality metrics.

No torch needed: weight files in PyTorch format are read by `torch_checkpoint`.
"""

from consistency_jax.evaluation.digits import load_digits_features
from consistency_jax.evaluation.inception import load_fid_inception
from consistency_jax.evaluation.lpips import load_lpips
from consistency_jax.evaluation.metrics import (
    extract_features,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_statistics,
    reference_statistics,
    save_statistics,
)
from consistency_jax.evaluation.weights import WeightsUnavailableError
from consistency_jax.evaluation.distribution import sliced_wasserstein
