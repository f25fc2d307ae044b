"""TrigFlow and sCT/sCD against closed forms: the exact EDM <-> TrigFlow conversion on a Gaussian
mixture's exact denoiser, the boundary, the paper's times, the JVP tangent against a finite
difference along the exact PF-ODE, and the sCM loss of the exact consistency function of
Gaussian data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_ode import reference_solution

from consistency_jax.config import schema
from consistency_jax.core import losses, ode
from consistency_jax.core.parametrization import (
    Parametrization,
    edm_network_as_trigflow,
    edm_scalings,
    edm_sigma,
    precondition,
    trigflow_network,
    trigflow_time,
)
from consistency_jax.data.toy import gmm2d
from consistency_jax.networks import build_network, network_fn

GMM = gmm2d()
SD = 0.5
EDM = Parametrization("edm", SD, 0.0)
TRIG = Parametrization("trigflow", SD, 0.0)


def edm_gmm_net(y: jax.Array, c_noise: jax.Array) -> jax.Array:
    """The EDM network F_edm(c_in x, c_noise) whose preconditioned denoiser is the mixture's exact one."""
    sigma = jnp.exp(4 * c_noise)[:, None]
    c_skip, c_out, c_in, _ = edm_scalings(sigma, SD)
    x = y / c_in
    return (GMM.denoise(x, sigma[:, 0]) - c_skip * x) / c_out


TEACHER = edm_network_as_trigflow(edm_gmm_net, SD)  # TrigFlow's F of the exact denoiser


def heun_t(x: jax.Array, t0: float, t1: float, steps: int) -> jax.Array:
    """TrigFlow's PF-ODE dx_t/dt = sigma_d F from t0 to t1 by Heun steps on a uniform t grid."""
    ts = jnp.linspace(t0, t1, steps + 1)
    return _heun_t(x, jnp.stack([ts[:-1], ts[1:]], axis=1))


@jax.jit
def _heun_t(x: jax.Array, pairs: jax.Array) -> jax.Array:
    def step(x, pair):
        a, b = pair
        d = ode.trigflow_drift(TEACHER, x, a, SD)
        x_e = x + (b - a) * d
        return x + (b - a) * (d + ode.trigflow_drift(TEACHER, x_e, b, SD)) / 2, None

    return jax.lax.scan(step, x, pairs)[0]


def test_edm_denoiser_and_its_trigflow_conversion_give_the_same_x0():
    x_sigma = 2.0 * jax.random.normal(jax.random.key(0), (64, 2))
    for sigma in (0.01, 0.3, 1.0, 5.0, 80.0):
        t = trigflow_time(jnp.float32(sigma), SD)
        d = precondition(edm_gmm_net, EDM, x_sigma, sigma)
        np.testing.assert_allclose(d, GMM.denoise(x_sigma, sigma), atol=2e-5)
        f = precondition(TEACHER, TRIG, jnp.cos(t) * x_sigma, t)
        np.testing.assert_allclose(f, d, atol=1e-4 * max(1.0, sigma))


def test_edm_and_trigflow_pf_odes_trace_the_same_trajectory():
    """From sigma = 2 to 1, 0.3, 0.05: the TrigFlow ODE in t (x_t = cos t x_sigma) lands on the
    float64 reference solution of EDM's ODE in sigma."""
    x = 2.0 * np.asarray(jax.random.normal(jax.random.key(1), (32, 2)), np.float64)
    t0 = float(trigflow_time(2.0, SD))
    for sigma in (1.0, 0.3, 0.05):
        t1 = float(trigflow_time(sigma, SD))
        x_t = heun_t(jnp.asarray(np.cos(t0) * x, jnp.float32), t0, t1, 200)
        np.testing.assert_allclose(np.asarray(x_t) / np.cos(t1), reference_solution(x, 2.0, sigma),
                                   atol=2e-4)


@pytest.mark.parametrize("kind", ["trigflow", "edm"])
def test_boundary_f_of_x_at_zero_is_x_exactly_for_any_network(kind):
    cfg = schema.get_config().network
    model = build_network(cfg)
    x = jax.random.normal(jax.random.key(0), (16, 2)) * 3
    params = model.init(jax.random.key(1), x, jnp.zeros(16))["params"]
    net = trigflow_network(network_fn(model, params), kind, SD)
    np.testing.assert_array_equal(precondition(net, TRIG, x, jnp.float32(0.0)), x)
    assert np.max(np.abs(np.asarray(precondition(net, TRIG, x, 1.0)) - np.asarray(x))) > 1e-3


def test_the_papers_times():
    t_max = float(trigflow_time(80.0, SD))
    assert t_max == pytest.approx(np.arctan(160.0)) and round(t_max, 4) == 1.5645
    assert float(edm_sigma(jnp.float32(1.1), SD)) == pytest.approx(0.9824, abs=1e-4)  # t_mid
    # tau ~ N(P_mean, P_std^2), t = arctan(e^tau / sigma_d): ln(sigma_d tan t) is that normal
    t = losses.scm_time(jax.random.key(0), 200_000, -1.0, 1.4, SD)
    assert float(t.min()) > 0 and float(t.max()) < np.pi / 2
    tau = np.log(SD * np.tan(np.asarray(t, np.float64)))
    assert tau.mean() == pytest.approx(-1.0, abs=0.01) and tau.std() == pytest.approx(1.4, abs=0.01)


# --- the JVP tangent ------------------------------------------------------------------------------

def test_jvp_tangent_is_the_derivative_of_f_along_the_exact_pf_ode():
    """g at r = 1 without normalisation is cos t df/dt: it equals a central difference of f (a
    random MLP's consistency function) between the exact trajectory's points at t - h and t + h."""
    cfg = schema.get_config().network
    model = build_network(cfg)
    x_sigma = 1.5 * jax.random.normal(jax.random.key(2), (32, 2))
    params = model.init(jax.random.key(3), x_sigma, jnp.zeros(32))["params"]
    net = network_fn(model, params)  # c_noise = t: a native TrigFlow network
    f = lambda x, t: precondition(net, TRIG, x, t)
    h = 1e-2
    for t in (0.3, 0.9, 1.3):
        x_t = jnp.cos(t) * x_sigma
        tt = jnp.full((32,), t, jnp.float32)
        dxt_dt = ode.trigflow_drift(TEACHER, x_t, tt, SD)
        f_net, cs_dnet = losses.trigflow_jvp(net, x_t, tt, dxt_dt, SD)
        g = losses.scm_tangent(f_net, cs_dnet, x_t, tt, dxt_dt, 1.0, SD)
        ahead, behind = heun_t(x_t, t, t + h, 8), heun_t(x_t, t, t - h, 8)
        central = (f(ahead, t + h) - f(behind, t - h)) / (2 * h)
        scale = float(jnp.max(jnp.abs(central)))
        np.testing.assert_allclose(g / np.cos(t), central, atol=2e-3 * scale)


# --- the sCM loss of Gaussian data's exact consistency function ----------------------------------

S = 0.3  # the data: x0 ~ N(0, S^2 I)


def gauss_x0(x_t: jax.Array, t: jax.Array) -> jax.Array:
    """E[x0 | x_t] = cos t S^2 x_t / (cos^2 t S^2 + sin^2 t sigma_d^2)."""
    c, s = jnp.cos(t)[:, None], jnp.sin(t)[:, None]
    return c * S**2 * x_t / (c**2 * S**2 + s**2 * SD**2)


def gauss_f(x_t: jax.Array, t: jax.Array, eps: float = 0.0) -> jax.Array:
    """The exact consistency function: x_t / sqrt(var x_t) is constant along the PF-ODE, so
    f(x_t, t) = S x_t / sqrt(cos^2 t S^2 + sin^2 t sigma_d^2); plus eps t x_t, not constant."""
    c, s = jnp.cos(t)[:, None], jnp.sin(t)[:, None]
    return S * x_t / jnp.sqrt(c**2 * S**2 + s**2 * SD**2) + eps * t[:, None] * x_t


def as_network(f):
    """F(x_t / sigma_d, t) with cos t x_t - sigma_d sin t F = f(x_t, t)."""
    def net(y, t):
        x_t = SD * y
        return (jnp.cos(t)[:, None] * x_t - f(x_t, t)) / (SD * jnp.sin(t)[:, None])
    return net


def _scm_loss(f, tangent_c=0.1):
    x0 = S * jax.random.normal(jax.random.key(4), (256, 4))
    z = SD * jax.random.normal(jax.random.key(5), (256, 4))
    t = jnp.clip(losses.scm_time(jax.random.key(6), 256, -1.0, 1.4, SD), 0.02, 1.55)
    teacher_velocity = lambda x_t, t: ode.trigflow_drift(as_network(gauss_x0), x_t, t, SD)
    net = as_network(f)
    x_t = losses.trigflow_noisy(x0, z, t)
    dxt_dt = teacher_velocity(x_t, t)
    g = losses.scm_tangent(*losses.trigflow_jvp(net, x_t, t, dxt_dt, SD), x_t, t, dxt_dt, 1.0, SD)
    value = losses.scm_loss(net, net, teacher_velocity, x0, z, t, 1.0, tangent_c, False,
                            jnp.zeros_like(t), jnp.ones_like(t), SD)
    return float(value), float(jnp.max(jnp.abs(g)))


def test_scm_tangent_and_loss_vanish_for_the_exact_consistency_function():
    exact_loss, exact_g = _scm_loss(gauss_f)
    wrong_loss, wrong_g = _scm_loss(lambda x, t: gauss_f(x, t, 0.05))
    denoiser_loss, _ = _scm_loss(gauss_x0)  # the one-step denoiser is not the flow map
    assert exact_g < 1e-5 and wrong_g > 1e-2, (exact_g, wrong_g)
    assert exact_loss < 1e-8 and wrong_loss > 1e4 * exact_loss and denoiser_loss > 1e4 * exact_loss, (
        exact_loss, wrong_loss, denoiser_loss)


def test_sct_velocity_is_the_derivative_of_the_noisy_point():
    x0, z = jax.random.normal(jax.random.key(7), (2, 8, 3))
    t = jnp.linspace(0.1, 1.5, 8)
    ahead = losses.trigflow_noisy(x0, z, t + 1e-3)
    behind = losses.trigflow_noisy(x0, z, t - 1e-3)
    np.testing.assert_allclose(losses.sct_velocity(x0, z, t), (ahead - behind) / 2e-3, atol=2e-3)
