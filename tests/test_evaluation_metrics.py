"""FID/IS/KID and the statistics files, against closed forms and pytorch-fid."""

import numpy as np
import pytest

from consistency_jax.evaluation import metrics


def _gaussian_features(rng, n, mean, std):
    return mean + std * rng.standard_normal((n, len(std)))


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).standard_normal((500, 32))
    mu, sigma = metrics.feature_statistics(features)
    assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_frechet_distance_equals_the_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(16), rng.standard_normal(16)
    rotation, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    s1, s2 = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    sigma1, sigma2 = rotation @ np.diag(s1) @ rotation.T, rotation @ np.diag(s2) @ rotation.T
    closed_form = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    assert metrics.frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
        closed_form, rel=1e-9
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pytorch-fid passes scipy's old `disp`
@pytest.mark.parametrize("n", [300, 20])  # 20 < 64 dimensions: singular covariances
def test_frechet_distance_matches_pytorch_fid(n):
    fid_score = pytest.importorskip(
        "pytorch_fid.fid_score", reason="needs pytorch-fid (requirements-test.txt)"
    )
    rng = np.random.default_rng(2)
    stats1 = metrics.feature_statistics(_gaussian_features(rng, n, 0.0, np.ones(64)))
    stats2 = metrics.feature_statistics(_gaussian_features(rng, n + 7, 0.3, np.full(64, 1.5)))
    expected = fid_score.calculate_frechet_distance(*stats1, *stats2)
    assert metrics.frechet_distance(*stats1, *stats2) == pytest.approx(expected, rel=1e-6)


def test_inception_score_bounds():
    assert metrics.inception_score(np.zeros((100, 1008)))[0] == pytest.approx(1.0)
    confident = 100.0 * np.eye(10)[np.arange(200) % 10]  # every class equally often, each certain
    mean, std = metrics.inception_score(confident, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-6) and std < 1e-6


def test_inception_score_splits_follow_improved_gan_boundaries():
    logits = np.random.default_rng(3).standard_normal((25, 7)) * 3
    bounds = [i * 25 // 4 for i in range(5)]
    per_split = [
        metrics.inception_score(logits[lo:hi], splits=1)[0]
        for lo, hi in zip(bounds, bounds[1:], strict=False)
    ]
    assert metrics.inception_score(logits, splits=4) == pytest.approx(
        (np.mean(per_split), np.std(per_split))
    )


def test_mmd2_unbiased_is_the_u_statistic():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 3)), rng.standard_normal((5, 3)) + 0.5

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / 30
    yy = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(a, b) for a in x for b in y) / 30
    assert metrics.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy)


def test_kid_is_unbiased_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(5)
    same = metrics.kernel_inception_distance(
        rng.standard_normal((2000, 16)),
        rng.standard_normal((2000, 16)),
        num_subsets=50,
        subset_size=200,
    )
    shifted = metrics.kernel_inception_distance(
        rng.standard_normal((2000, 16)),
        rng.standard_normal((2000, 16)) + 0.3,
        num_subsets=50,
        subset_size=200,
    )
    assert abs(same[0]) < 3 * same[1] / np.sqrt(50)  # mean zero within its standard error
    assert shifted[0] > 10 * same[1]


def test_statistics_files_load_mu_sigma_or_raw_features(tmp_path):
    features = np.random.default_rng(6).standard_normal((50, 8)).astype(np.float32)
    mu, sigma = metrics.feature_statistics(features)
    np.savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)  # pytorch-fid's statistics files
    loaded = metrics.load_statistics(tmp_path / "stats.npz")
    np.testing.assert_array_equal(loaded[0], mu)
    np.testing.assert_array_equal(loaded[1], sigma)
    np.savez(tmp_path / "pool.npz", pool_3=features)  # score_sde's raw-feature files
    np.testing.assert_allclose(metrics.load_statistics(tmp_path / "pool.npz")[1], sigma)
    np.savez(tmp_path / "other.npz", x=features)
    with pytest.raises(ValueError, match="expected 'mu' and 'sigma'"):
        metrics.load_statistics(tmp_path / "other.npz")


def test_extract_features_pads_the_last_batch_to_one_shape():
    images = np.random.default_rng(7).integers(0, 256, (10, 4, 4, 1), dtype=np.uint8)
    shapes = set()

    def features_fn(batch):
        shapes.add(batch.shape)
        flat = batch.reshape(len(batch), -1).astype(np.float32)
        return flat, flat[:, :3]

    mu, sigma = metrics.feature_statistics(
        metrics.extract_features((images[i : i + 4] for i in range(0, 10, 4)), features_fn)[0]
    )
    assert shapes == {(4, 4, 4, 1)}
    expected = metrics.feature_statistics(images.reshape(10, -1).astype(np.float32))
    np.testing.assert_allclose(mu, expected[0])
    np.testing.assert_allclose(sigma, expected[1])
