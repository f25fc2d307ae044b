"""The PF-ODE integrator against a high-accuracy reference on a Gaussian mixture's exact denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from consistency_jax.core import ode, sampling, schedules
from consistency_jax.data.toy import gmm2d

GMM = gmm2d()


def gmm_denoise_np(x: np.ndarray, sigma: float) -> np.ndarray:
    """The same closed form as GaussianMixture.denoise, in float64 numpy, for the reference."""
    var = GMM.std**2 + sigma**2
    sq = ((x[:, None, :] - GMM.means[None]) ** 2).sum(-1)
    logits = np.log(GMM.weights) - 0.5 * sq / var
    resp = np.exp(logits - logits.max(1, keepdims=True))
    resp /= resp.sum(1, keepdims=True)
    post = GMM.means[None] + GMM.std**2 / var * (x[:, None, :] - GMM.means[None])
    return np.einsum("bk,bkd->bd", resp, post)


def reference_solution(x: np.ndarray, sigma_start: float, sigma_end: float) -> np.ndarray:
    def rhs(sigma, flat):
        y = flat.reshape(x.shape)
        return ((y - gmm_denoise_np(y, sigma)) / sigma).ravel()

    sol = solve_ivp(rhs, (sigma_start, sigma_end), x.ravel().astype(np.float64),
                    method="DOP853", rtol=1e-12, atol=1e-12)
    return sol.y[:, -1].reshape(x.shape)


@pytest.fixture(scope="module")
def problem():
    x = 2.0 * np.asarray(jax.random.normal(jax.random.key(1), (64, 2)), np.float64)
    return x, reference_solution(x, 1.0, 0.3)


def test_closed_form_denoiser_matches_numpy_twin():
    x = np.random.default_rng(0).normal(size=(16, 2))
    for sigma in (0.01, 0.5, 10.0):
        np.testing.assert_allclose(GMM.denoise(jnp.asarray(x, jnp.float32), sigma),
                                   gmm_denoise_np(x, sigma), atol=2e-5)


def _error(problem, solver: str, n: int) -> float:
    x, ref = problem
    sigmas = jnp.linspace(1.0, 0.3, n + 1)
    out = ode.integrate(GMM.denoise, jnp.asarray(x, jnp.float32), sigmas, solver)
    return float(np.max(np.abs(np.asarray(out, np.float64) - ref)))


@pytest.mark.parametrize("solver,order", [("euler", 1.0), ("heun", 2.0)])
def test_integrator_converges_at_its_order(problem, solver, order):
    errs = [_error(problem, solver, n) for n in (16, 32, 64)]
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))  # halving h divides error by 2^order
    assert np.all(np.abs(rates - order) < 0.15), (errs, rates)
    assert errs[-1] < (0.01 if solver == "euler" else 1e-4)


def test_heun_on_karras_grid_to_zero_costs_35_evaluations_and_lands_on_the_data():
    calls = []

    def denoise(x, sigma):
        jax.debug.callback(lambda: calls.append(1))
        return GMM.denoise(x, sigma)

    sigmas = sampling.teacher_sigmas(18, 0.002, 80.0, 7.0)
    x = 80.0 * jax.random.normal(jax.random.key(0), (512, 2))
    out = jax.block_until_ready(ode.integrate(denoise, x, sigmas, "heun"))
    assert len(calls) == 35
    radius = np.linalg.norm(np.asarray(out), axis=1)
    assert np.median(np.abs(radius - 0.8)) < 0.08  # samples sit on the ring of modes


def test_stochastic_sampler_without_churn_is_the_heun_integrator():
    sigmas = sampling.teacher_sigmas(10, 0.002, 80.0, 7.0)
    x = 80.0 * jax.random.normal(jax.random.key(0), (32, 2))
    a = ode.integrate(GMM.denoise, x, sigmas, "heun")
    b = ode.edm_stochastic_sample(GMM.denoise, x, sigmas, jax.random.key(5), s_churn=0.0)
    np.testing.assert_allclose(a, b, atol=1e-6)
    c = ode.edm_stochastic_sample(GMM.denoise, x, sigmas, jax.random.key(5), s_churn=10.0,
                                  s_min=0.05, s_max=50.0, s_noise=1.003)
    assert np.max(np.abs(np.asarray(a) - np.asarray(c))) > 1e-3


def test_euler_step_of_the_one_point_denoiser_is_ct_re_noising():
    """With D(x, sigma) = x0 the Euler step maps x0 + t z to x0 + t' z exactly (CM eq. 9)."""
    k1, k2 = jax.random.split(jax.random.key(0))
    x0, z = jax.random.normal(k1, (8, 2)), jax.random.normal(k2, (8, 2))
    t, t2 = jnp.full((8,), 3.0), jnp.full((8,), 1.5)
    out = ode.euler_step(lambda x, s: x0, x0 + 3.0 * z, t, t2)
    np.testing.assert_allclose(out, x0 + 1.5 * z, atol=1e-6)


@pytest.mark.parametrize("sigmas,match", [
    ([80.0], "at least 2"),
    ([], "at least 2"),
    ([0.002, 80.0], "strictly decreasing"),
    ([80.0, 80.0, 0.0], "strictly decreasing"),
    ([80.0, -1.0], ">= 0"),
    ([[80.0, 0.0]], "1-D"),
])
def test_bad_sigma_grids_are_rejected(sigmas, match):
    with pytest.raises(ValueError, match=match):
        ode.integrate(GMM.denoise, jnp.zeros((2, 2)), jnp.asarray(sigmas), "heun")


def test_unknown_solver_is_rejected():
    with pytest.raises(ValueError, match="Unknown ODE solver 'rk4'"):
        ode.integrate(GMM.denoise, jnp.zeros((2, 2)), jnp.asarray([1.0, 0.0]), "rk4")


def test_integrator_runs_inside_jit_and_vmap():
    sigmas = schedules.karras_sigmas(8, 0.002, 2.0, 7.0)
    x = jax.random.normal(jax.random.key(3), (16, 2))
    eager = ode.integrate(GMM.denoise, x, sigmas)
    jitted = jax.jit(lambda y: ode.integrate(GMM.denoise, y, sigmas))(x)
    np.testing.assert_allclose(eager, jitted, atol=1e-6)
