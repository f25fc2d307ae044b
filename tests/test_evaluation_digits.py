"""The shipped digits classifier and its Frechet Digits Distance."""

import numpy as np
import pytest

from consistency_jax.evaluation import digits_classifier, metrics
from consistency_jax.networks.pretrained import digits, load_digits_features
from consistency_jax.networks.pretrained.resize import resize_bilinear


@pytest.fixture(scope="module")
def split():
    return digits_classifier.digits_split()


def test_shipped_weights_are_small_and_accurate_on_held_out_digits(split):
    _, _, x_test, y_test = split
    assert digits.DIGITS_WEIGHTS.stat().st_size < 100_000
    assert len(x_test) == 360
    assert digits.accuracy(digits.load_params(), x_test, y_test) >= 0.95


def test_features_of_8x8_and_16x16_digits(split):
    _, _, x_test, _ = split
    features_fn = load_digits_features()
    features, logits = features_fn(x_test[:5])
    assert features.shape == (5, 64) and logits.shape == (5, 10)
    # a 16x16 image is read as the mean of its 2x2 blocks
    x16 = np.repeat(np.repeat(x_test[:5], 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(features_fn(x16)[0], features, atol=1e-5)
    np.testing.assert_allclose(
        resize_bilinear(x16.astype(np.float32), (8, 8)), x_test[:5], atol=1e-4
    )


def test_frechet_digits_distance_separates_digits_from_noise(split):
    x_train, _, x_test, _ = split
    features_fn = load_digits_features()
    reference = metrics.feature_statistics(
        metrics.extract_features(np.array_split(x_train, 4), features_fn)[0]
    )
    held_out = metrics.feature_statistics(features_fn(x_test)[0])
    noise = np.random.default_rng(0).integers(0, 256, x_test.shape, dtype=np.uint8)
    noise_stats = metrics.feature_statistics(features_fn(noise)[0])
    real_fdd = metrics.frechet_distance(*reference, *held_out)
    assert real_fdd < 5 and metrics.frechet_distance(*reference, *noise_stats) > 20 * real_fdd
