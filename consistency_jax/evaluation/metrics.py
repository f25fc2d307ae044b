"""Sample-quality metrics on classifier features and logits: FID, IS, KID, and statistics files.

Everything here is NumPy in float64, on features from any network returning (features, logits):
`load_fid_inception` (FID/IS/KID) or `load_digits_features` (the Frechet Digits Distance).
"""

import os
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import scipy.linalg
import scipy.special

FeaturesFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def _f64(x) -> np.ndarray:
    return np.asarray(x, np.float64)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma): the mean and the unbiased covariance of `features` [N, D], in float64."""
    features = _f64(features)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (arXiv 1706.08500), computed as
    pytorch-fid's calculate_frechet_distance: scipy sqrtm, `eps` added to both diagonals if the
    product is singular, a small imaginary part dropped."""
    mu1, mu2 = np.atleast_1d(_f64(mu1)), np.atleast_1d(_f64(mu2))
    sigma1, sigma2 = np.atleast_2d(_f64(sigma1)), np.atleast_2d(_f64(sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics of different sizes: {mu1.shape} vs {mu2.shape}")
    with warnings.catch_warnings():  # a singular product is handled below, as pytorch-fid does
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(len(sigma1))
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has an imaginary component {np.abs(covmean.imag).max()}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) (arXiv 1606.03498): (mean, std) over `splits` consecutive
    chunks, with improved-GAN's chunk boundaries i * N // splits.

    p(y|x) is the softmax over all the logits given: all 1008 of the FID Inception's, as tfgan's
    classifier_score_from_logits (used by score_sde) and torch-fidelity take them. Ours include
    the fc bias; improved-GAN's code and torch-fidelity's default 'logits_unbiased' leave it out.
    score_sde reports splits=1 over 50k samples; splits=10 is the improved-GAN convention.
    """
    log_p = scipy.special.log_softmax(_f64(logits), axis=1)
    bounds = [i * len(log_p) // splits for i in range(splits + 1)]
    scores = []
    for chunk in (log_p[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)):
        log_marginal = scipy.special.logsumexp(chunk, axis=0, b=1 / len(chunk))
        kl = np.sum(np.exp(chunk) * (chunk - log_marginal), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0
) -> np.ndarray:
    """k(x, y) = (x.y / d + coef0)^degree, KID's kernel (arXiv 1801.01401)."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimate of MMD^2 with the polynomial kernel (arXiv 1801.01401)."""
    m, n = len(x), len(y)
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def kernel_inception_distance(
    features1: np.ndarray,
    features2: np.ndarray,
    num_subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD^2 over `num_subsets` random subsets of each set, drawn
    without replacement (torch-fidelity's defaults; subsets shrink to the smaller set's size)."""
    features1, features2 = _f64(features1), _f64(features2)
    size = min(subset_size, len(features1), len(features2))
    rng = np.random.default_rng(seed)
    mmds = [
        mmd2_unbiased(
            features1[rng.choice(len(features1), size, replace=False)],
            features2[rng.choice(len(features2), size, replace=False)],
        )
        for _ in range(num_subsets)
    ]
    return float(np.mean(mmds)), float(np.std(mmds))


def extract_features(
    batches: Iterable[np.ndarray], features_fn: FeaturesFn
) -> tuple[np.ndarray, np.ndarray]:
    """(features, logits) of every image in `batches` (uint8 NHWC). Later batches, no larger than
    the first, are padded to its size, so the jitted `features_fn` compiles once."""
    features, logits, batch_size = [], [], None
    for batch in batches:
        batch = np.asarray(batch)
        batch_size = batch_size or len(batch)
        if len(batch) > batch_size:
            raise ValueError(f"batch of {len(batch)} after a first batch of {batch_size}")
        padded = np.pad(batch, [(0, batch_size - len(batch))] + [(0, 0)] * (batch.ndim - 1))
        batch_features, batch_logits = features_fn(padded)
        features.append(np.asarray(batch_features)[: len(batch)])
        logits.append(np.asarray(batch_logits)[: len(batch)])
    if not features:
        raise ValueError("no images to compute features of")
    return np.concatenate(features), np.concatenate(logits)


def load_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) from an `.npz` holding `mu` and `sigma`, or raw `pool_3` features (score_sde)."""
    with np.load(path) as data:
        if "mu" in data and "sigma" in data:
            return _f64(data["mu"]), _f64(data["sigma"])
        if "pool_3" in data:
            return feature_statistics(data["pool_3"])
        raise ValueError(f"{path} holds {sorted(data)}; expected 'mu' and 'sigma', or 'pool_3'")
