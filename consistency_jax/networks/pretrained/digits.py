"""A small classifier of scikit-learn's 8x8 digits whose penultimate features give the
"Frechet Digits Distance": FID's formula (`metrics.frechet_distance`) on a network that runs in
seconds on a CPU, for the embedded digits configurations.

The weights ship in assets/digits_classifier.npz; `python -m consistency_jax.evaluation.digits_classifier`
retrains them deterministically (fixed split, initialisation and batch order) and rewrites it.
"""

import functools
import os
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from consistency_jax.networks.pretrained.resize import resize_bilinear

DIGITS_WEIGHTS = Path(__file__).parent / "assets" / "digits_classifier.npz"
DIGITS_SIZE = 8


class DigitsClassifier(nn.Module):
    """uint8 NHWC grayscale digits of any size (resized bilinearly to 8x8; a 16x16 image becomes
    the mean of its 2x2 blocks) -> (features [N, 64], logits [N, 10])."""

    hidden: int = 128
    features: int = 64

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = resize_bilinear(images.astype(jnp.float32) / 255.0, (DIGITS_SIZE, DIGITS_SIZE))
        x = x.reshape(len(x), -1)
        x = nn.relu(nn.Dense(self.hidden)(x))
        features = nn.relu(nn.Dense(self.features)(x))
        return features, nn.Dense(10)(features)


def accuracy(params: dict, images: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of `images` the classifier labels correctly."""
    _, logits = _digits_apply(params, jnp.asarray(images))
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def load_params(path: str | os.PathLike = DIGITS_WEIGHTS) -> dict:
    """The classifier's parameters from a `save_params` file (by default the shipped one)."""
    with np.load(path) as data:
        return traverse_util.unflatten_dict({k: jnp.asarray(data[k]) for k in data}, sep="/")


@jax.jit
def _digits_apply(params: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return DigitsClassifier().apply({"params": params}, images)


def load_digits_features(
    path: str | os.PathLike = DIGITS_WEIGHTS,
) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """A jitted fn: uint8 NHWC [N, H, W, 1] digits -> (features [N, 64], logits [N, 10])."""
    return functools.partial(_digits_apply, load_params(path))
