"""Karras grid, CT/iCT curricula and iCT's index distribution against the published values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from consistency_jax.core import schedules

# The N = 18 grid of EDM / CM CIFAR-10 (REFERENCE.md, section 1).
KARRAS_18 = [80, 57.59, 40.79, 28.37, 19.35, 12.91, 8.40, 5.32, 3.26, 1.92, 1.09, 0.585,
             0.296, 0.140, 0.060, 0.023, 0.0075, 0.002]


def test_karras_grid_matches_edm_and_has_exact_endpoints():
    s = np.asarray(schedules.karras_sigmas(18, 0.002, 80.0, 7.0))
    np.testing.assert_allclose(s, KARRAS_18, rtol=6e-3, atol=5e-4)
    assert s[0] == np.float32(80.0) and s[-1] == np.float32(0.002)
    assert np.all(np.diff(s) < 0)


def test_karras_grid_closed_form_in_float64():
    i = np.arange(40)
    ref = (80 ** (1 / 7) + i / 39 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(schedules.karras_sigmas(40, 0.002, 80.0, 7.0), ref, rtol=2e-6)


def test_ct_curriculum_matches_official_code_table():
    k = jnp.array([0, 1000, 100_000, 400_000, 740_000, 800_000])
    n = schedules.ct_num_scales(k, 800_000, 2, 150)
    np.testing.assert_array_equal(n, [2, 6, 54, 107, 146, 151])
    mu = schedules.ct_target_ema(n, 2, 0.9)
    np.testing.assert_allclose(mu, [0.81, 0.9587, 0.99603, 0.99801, 0.99855, 0.99860], atol=6e-5)


def test_ict_curriculum_doubles_in_equal_stages():
    k = jnp.arange(0, 400_001, 50_000)
    n = schedules.ict_num_scales(k, 400_000, 10, 1280)
    np.testing.assert_array_equal(n, [11, 21, 41, 81, 161, 321, 641, 1281, 1281])
    assert int(schedules.ict_num_scales(49_999, 400_000, 10, 1280)) == 11


def test_ict_index_distribution_is_the_lognormal_mass_of_each_interval():
    n, max_n, p_mean, p_std = 11, 21, -1.1, 2.0
    logits = schedules.ict_index_logits(n, max_n, 0.002, 80.0, 7.0, p_mean, p_std)
    assert logits.shape == (max_n - 1,)
    assert np.all(np.isneginf(np.asarray(logits[n - 1 :])))
    sig = np.asarray(schedules.karras_sigmas(n, 0.002, 80.0, 7.0), np.float64)
    mass = norm.cdf((np.log(sig[:-1]) - p_mean) / p_std) - norm.cdf((np.log(sig[1:]) - p_mean) / p_std)
    np.testing.assert_allclose(jax.nn.softmax(logits)[: n - 1], mass / mass.sum(), rtol=1e-4)


def test_lognormal_sigma_moments():
    s = schedules.lognormal_sigma(jax.random.key(0), (200_000,), -1.2, 1.2)
    logs = np.log(np.asarray(s))
    assert abs(logs.mean() + 1.2) < 0.01 and abs(logs.std() - 1.2) < 0.01


def test_grid_needs_two_points():
    with pytest.raises(ValueError, match="at least 2"):
        schedules.karras_sigmas(1, 0.002, 80.0, 7.0)
