"""Samplers: CM Algorithm 1 step by step, grid indices, determinism, the teacher's ODE sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from consistency_jax.core import ode, sampling
from consistency_jax.data.toy import gmm2d

EPS, TMAX = 0.002, 80.0


def test_multistep_follows_cm_algorithm_1():
    calls = []

    def f(x, t):
        calls.append((x, float(t)))
        return jnp.full_like(x, 0.25)  # a consistency function that always answers 0.25

    key = jax.random.key(0)
    out = sampling.multistep_sample(f, key, (20_000, 2), (TMAX, 1.0), EPS)
    np.testing.assert_array_equal(out, 0.25)
    (x_first, t_first), (x_second, t_second) = calls
    assert (t_first, t_second) == (TMAX, 1.0)
    np.testing.assert_allclose(x_first, TMAX * jax.random.normal(key, (20_000, 2)), rtol=1e-6)
    noise = np.asarray(x_second) - 0.25  # x = x0 + sqrt(tau^2 - eps^2) z
    assert noise.std() == pytest.approx(np.sqrt(1.0 - EPS**2), rel=0.02)
    assert abs(noise.mean()) < 0.02


def test_one_sigma_is_one_step_and_seeds_are_deterministic():
    f = lambda x, t: jnp.tanh(x / t)
    a = sampling.multistep_sample(f, jax.random.key(1), (8, 2), (TMAX,), EPS)
    np.testing.assert_allclose(a, jnp.tanh(jax.random.normal(jax.random.key(1), (8, 2))), rtol=1e-5)
    b = sampling.multistep_sample(f, jax.random.key(1), (8, 2), (TMAX, 0.5), EPS)
    c = sampling.multistep_sample(f, jax.random.key(1), (8, 2), (TMAX, 0.5), EPS)
    np.testing.assert_array_equal(b, c)
    assert not np.array_equal(a, b)


def test_clip_keeps_images_in_range():
    f = lambda x, t: 3 * x
    out = sampling.multistep_sample(f, jax.random.key(0), (4, 4, 4, 1), (TMAX, 1.0), EPS, clip=True)
    assert float(jnp.max(jnp.abs(out))) <= 1.0


def test_stochastic_teacher_sampler_is_edm_alg2_from_the_same_x_T():
    g = gmm2d()
    sigmas = sampling.teacher_sigmas(18, EPS, TMAX, 7.0)
    key = jax.random.key(5)
    churn = sampling.Churn(s_churn=40.0, s_min=0.05, s_max=50.0, s_noise=1.003)
    out = sampling.teacher_sample(g.denoise, key, (64, 2), sigmas, "stochastic", churn=churn)
    x_T = TMAX * jax.random.normal(key, (64, 2))
    ref = ode.edm_stochastic_sample(g.denoise, x_T, sigmas, jax.random.fold_in(key, 1), 40.0, 0.05, 50.0, 1.003)
    np.testing.assert_array_equal(out, ref)
    heun = sampling.teacher_sample(g.denoise, key, (64, 2), sigmas, "heun")
    assert np.max(np.abs(np.asarray(out) - np.asarray(heun))) > 1e-2  # the churn moved the samples
    # without churn it is the deterministic Heun sampler
    no_churn = sampling.teacher_sample(g.denoise, key, (64, 2), sigmas, "stochastic")
    np.testing.assert_allclose(no_churn, heun, rtol=1e-6, atol=1e-6)


def test_multistep_sigmas_are_checked():
    with pytest.raises(ValueError, match="strictly decreasing"):
        sampling.check_multistep_sigmas((TMAX, 1.0, 2.0), EPS, TMAX)
    with pytest.raises(ValueError, match="lie in"):
        sampling.check_multistep_sigmas((TMAX, 0.001), EPS, TMAX)


def test_teacher_sample_is_the_integrator_from_sigma_max_noise():
    g = gmm2d()
    sigmas = sampling.teacher_sigmas(18, EPS, TMAX, 7.0)
    assert len(sigmas) == 19 and float(sigmas[-1]) == 0.0
    key = jax.random.key(4)
    out = sampling.teacher_sample(g.denoise, key, (64, 2), sigmas)
    ref = ode.integrate(g.denoise, TMAX * jax.random.normal(key, (64, 2)), sigmas)
    np.testing.assert_array_equal(out, ref)
