"""Low-dimensional toy data sets: fixed samples drawn from a seeded generator."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from consistency_jax.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """An isotropic Gaussian mixture: its data and its closed-form denoiser share these numbers."""

    means: np.ndarray  # [K, D]
    std: float  # per-coordinate std of every component
    weights: np.ndarray  # [K], sums to 1

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return (self.means[k] + self.std * rng.standard_normal((n, self.means.shape[1]))).astype(
            np.float32
        )

    def denoise(self, x: jax.Array, sigma: jax.Array) -> jax.Array:
        """The exact denoiser E[x0 | x0 + sigma n = x] of this mixture (Bayes' rule per component)."""
        sigma = jnp.asarray(sigma, x.dtype)
        sigma = sigma if sigma.ndim == 0 else sigma.reshape(-1, 1)
        var = self.std**2 + sigma**2  # marginal per-coordinate variance of each component
        means = jnp.asarray(self.means, x.dtype)
        sq = jnp.sum((x[:, None, :] - means[None]) ** 2, axis=-1)  # [B, K]
        var_k = var if jnp.ndim(var) == 0 else var.reshape(-1, 1)
        logits = jnp.log(jnp.asarray(self.weights, x.dtype)) - 0.5 * sq / var_k
        resp = jax.nn.softmax(logits, axis=-1)
        posterior_means = means[None] + (self.std**2 / var_k)[..., None] * (x[:, None, :] - means[None])
        return jnp.einsum("bk,bkd->bd", resp, posterior_means)


def gmm2d() -> GaussianMixture:
    """Eight Gaussians (std 0.08) evenly spaced on a circle of radius 0.8."""
    angles = 2 * np.pi * np.arange(8) / 8
    means = 0.8 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture(means=means, std=0.08, weights=np.full(8, 1 / 8))


def _ring2d(n: int, rng: np.random.Generator) -> np.ndarray:
    angles = rng.uniform(0, 2 * np.pi, n)
    radius = 0.7 + 0.03 * rng.standard_normal(n)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1).astype(np.float32)


def _moons2d(n: int, rng: np.random.Generator) -> np.ndarray:
    upper = rng.random(n) < 0.5
    angles = rng.uniform(0, np.pi, n)
    x = np.where(upper, np.cos(angles), 1 - np.cos(angles))
    y = np.where(upper, np.sin(angles), 0.5 - np.sin(angles))
    pts = np.stack([x - 0.5, y - 0.25], axis=1) * 0.8 + 0.03 * rng.standard_normal((n, 2))
    return pts.astype(np.float32)


TOY_DATASETS = {
    "gmm2d": lambda n, rng: gmm2d().sample(n, rng),
    "ring2d": _ring2d,
    "moons2d": _moons2d,
}


def toy_points(name: str, n: int, seed: int) -> np.ndarray:
    """`n` points [n, 2] float32 of the toy data set `name`, the same for the same seed."""
    if name not in TOY_DATASETS:
        raise ConfigError(f"Unknown toy data set {name!r}; choose one of {sorted(TOY_DATASETS)}.")
    return TOY_DATASETS[name](n, np.random.default_rng(seed))
