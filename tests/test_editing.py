"""Zero-shot editing (CM Alg. 4) against closed forms: a Gaussian's exact consistency function,
the known part of the reference kept exactly, and the projectors' invariants."""

import jax
import jax.numpy as jnp
import numpy as np

from consistency_jax.core import editing, sampling
from consistency_jax.core.schedules import karras_sigmas

EPS, TMAX = 0.002, 80.0
MU = np.array([0.3, -0.2])
L = np.array([[0.5, 0.0], [0.35, 0.2]])
COV = L @ L.T  # x ~ N(MU, COV): correlated, so the known x_0 says much about x_1
LAM, V = np.linalg.eigh(COV)


def _gain(sigma: float) -> np.ndarray:
    """The exact consistency function of N(MU, COV) is affine: f(x, s) = MU + S_s (x - MU) with
    S_s = V diag(sqrt((lam + eps^2) / (lam + s^2))) V^T (the PF-ODE from s to eps)."""
    return V @ np.diag(np.sqrt((LAM + EPS**2) / (LAM + sigma**2))) @ V.T


def _exact_f(x: jax.Array, sigma: jax.Array) -> jax.Array:
    gain = V @ jnp.diag(jnp.sqrt((LAM + EPS**2) / (LAM + sigma**2))) @ V.T
    return MU + (x - MU) @ gain.T


def _alg4_moments(y: np.ndarray, keep: np.ndarray, sigmas) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of Alg. 4's output on the Gaussian, every step being linear-Gaussian."""
    known = np.diag(keep)
    mean, cov = y.copy(), sigmas[0] ** 2 * np.eye(2)
    for i, s in enumerate(sigmas):
        if i:
            cov = cov + (s**2 - EPS**2) * np.eye(2)
        gain = _gain(s)
        mean, cov = MU + gain @ (mean - MU), gain @ cov @ gain.T
        mean, cov = (np.eye(2) - known) @ mean + known @ y, (np.eye(2) - known) @ cov @ (np.eye(2) - known)
    return mean, cov


def _inpaint(sigmas, n: int, seed: int = 0):
    y = np.array([0.6, 0.0])
    keep = np.array([1.0, 0.0])
    x = editing.edit(_exact_f, jax.random.key(seed), jnp.broadcast_to(jnp.asarray(y, jnp.float32), (n, 2)),
                     editing.inpainting(jnp.asarray(keep)), sigmas, EPS)
    return np.asarray(x), y, keep


def test_inpainting_follows_alg4s_closed_form_and_keeps_the_known_part():
    sigmas = [float(s) for s in karras_sigmas(6, EPS, TMAX, 7.0)[:-1]]  # 5 steps
    x, y, keep = _inpaint(sigmas, 100_000)
    np.testing.assert_array_equal(x[:, 0], np.float32(y[0]))
    mean, cov = _alg4_moments(y, keep, sigmas)
    n = len(x)
    assert abs(x[:, 1].mean() - mean[1]) < 5 * np.sqrt(cov[1, 1] / n)
    assert abs(x[:, 1].var() - cov[1, 1]) < 5 * cov[1, 1] * np.sqrt(2 / n)


def test_inpainting_approaches_the_conditional_with_many_steps():
    """Alg. 4 is not exact in few steps (5 steps: the unknown coordinate keeps most of its prior
    spread); on a 1000-point grid it samples the analytic conditional closely."""
    y = np.array([0.6, 0.0])
    cond_mean = MU[1] + COV[1, 0] / COV[0, 0] * (y[0] - MU[0])
    cond_var = COV[1, 1] - COV[1, 0] ** 2 / COV[0, 0]
    few = _alg4_moments(y, np.array([1.0, 0.0]), [float(s) for s in karras_sigmas(6, EPS, TMAX, 7.0)[:-1]])
    assert few[1][1, 1] > 2 * cond_var
    sigmas = [float(s) for s in karras_sigmas(1001, EPS, TMAX, 7.0)[:-1]]
    x, _, _ = _inpaint(sigmas, 20_000, seed=1)
    assert abs(x[:, 1].mean() - cond_mean) < 0.01
    assert abs(x[:, 1].var() / cond_var - 1) < 0.06


def _images_and_f():
    y = jax.random.uniform(jax.random.key(3), (4, 8, 8, 3), minval=-0.9, maxval=0.9)
    w = jax.random.normal(jax.random.key(4), (3, 3))
    f = lambda x, s: jnp.tanh(x @ w / (1 + s))  # any nonlinear f: the projection does the work
    return y, f


def test_superresolution_output_block_averages_to_its_input():
    y, f = _images_and_f()
    low = editing.block_mean(y, 4)
    x = editing.edit(f, jax.random.key(0), y, editing.superresolution(4), (TMAX, 1.0, 0.1), EPS, clip=True)
    np.testing.assert_allclose(editing.block_mean(x, 4), low, atol=1e-6)
    assert float(jnp.abs(x - jnp.repeat(jnp.repeat(low, 4, 1), 4, 2)).max()) > 0.1  # detail was added


def test_colorization_keeps_the_grayscale_and_inpainting_the_pixels():
    y, f = _images_and_f()
    luma = lambda im: im @ jnp.asarray(editing.LUMA)
    x = editing.edit(f, jax.random.key(0), y, editing.colorization(), (TMAX, 1.0), EPS, clip=True)
    np.testing.assert_allclose(luma(x), luma(y), atol=1e-6)
    mask = (jnp.arange(8)[None, :, None, None] < 4).astype(jnp.float32)  # the top half known
    x = editing.edit(f, jax.random.key(0), y, editing.inpainting(mask), (TMAX, 1.0), EPS, clip=True)
    np.testing.assert_array_equal(x[:, :4], y[:, :4])
    assert not np.allclose(x[:, 4:], y[:, 4:], atol=0.05)


def test_editing_nothing_from_zero_is_multistep_sampling():
    _, f = _images_and_f()
    sigmas = (TMAX, 2.0, 0.5)
    shape = (4, 8, 8, 3)
    a = editing.edit(f, jax.random.key(5), jnp.zeros(shape), None, sigmas, EPS, clip=True)
    b = sampling.multistep_sample(f, jax.random.key(5), shape, sigmas, EPS, clip=True)
    np.testing.assert_array_equal(a, b)


def test_slerp_endpoints_and_norm():
    z0, z1 = jax.random.normal(jax.random.key(0), (2, 3, 4, 4, 1))
    np.testing.assert_array_equal(editing.slerp(z0, z1, 0.0), z0)
    np.testing.assert_allclose(editing.slerp(z0, z1, 1.0), z1, rtol=1e-6, atol=1e-6)
    mid = editing.slerp(z0, z1, 0.5)
    norms = lambda z: jnp.linalg.norm(z.reshape(3, -1), axis=1)
    # between two noises of similar norm, the spherical midpoint keeps that norm (a lerp shrinks it)
    np.testing.assert_allclose(norms(mid), (norms(z0) + norms(z1)) / 2, rtol=0.05)
    assert bool(jnp.all(norms((z0 + z1) / 2) < 0.85 * norms(mid)))
