"""Parametrization and losses: boundary condition, EDM weighting, distances, and the CD loss of
the exact consistency function of a Gaussian mixture's PF-ODE."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from consistency_jax.config import schema
from consistency_jax.core import ode, schedules
from consistency_jax.core.losses import ict_huber_c, pseudo_huber_distance
from consistency_jax.core.parametrization import (
    Parametrization,
    consistency_scalings,
    edm_scalings,
    precondition,
)
from consistency_jax.data.toy import gmm2d
from consistency_jax.networks import build_network, network_fn
from consistency_jax.training.objectives import make_distance, make_objective

GMM = gmm2d()
SD, EPS, TMAX = 0.5, 0.002, 80.0


def test_edm_scalings_closed_form():
    s = jnp.array([0.01, 0.5, 3.0, 80.0])
    c_skip, c_out, c_in, c_noise = edm_scalings(s, SD)
    np.testing.assert_allclose(c_skip, SD**2 / (s**2 + SD**2), rtol=1e-6)
    np.testing.assert_allclose(c_out, s * SD / np.sqrt(s**2 + SD**2), rtol=1e-6)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + SD**2), rtol=1e-6)
    np.testing.assert_allclose(c_noise, np.log(s) / 4, rtol=1e-6)
    # EDM's loss weight lambda = (sigma^2 + sd^2) / (sigma sd)^2 is 1 / c_out^2
    np.testing.assert_allclose(c_out**-2, (s**2 + SD**2) / (s * SD) ** 2, rtol=1e-5)


def test_consistency_scalings_meet_the_boundary_and_edm_far_from_it():
    c_skip, c_out, _, _ = consistency_scalings(jnp.float32(EPS), SD, EPS)
    assert float(c_skip) == 1.0 and float(c_out) == 0.0
    # c_out's denominator uses t^2, not (t - eps)^2 (CM code)
    t = jnp.float32(1.0)
    np.testing.assert_allclose(consistency_scalings(t, SD, EPS)[1], (1 - EPS) * SD / np.sqrt(1 + SD**2), rtol=1e-6)
    e, c = edm_scalings(jnp.float32(40.0), SD), consistency_scalings(jnp.float32(40.0), SD, EPS)
    np.testing.assert_allclose(e, c, rtol=1e-3)


def test_consistency_function_is_identity_at_sigma_min_for_any_network():
    cfg = schema.get_config().network
    model = build_network(cfg)
    x = jax.random.normal(jax.random.key(0), (16, 2)) * 3
    params = model.init(jax.random.key(1), x, jnp.zeros(16))["params"]
    cm = Parametrization("consistency", SD, EPS)
    out = precondition(network_fn(model, params), cm, x, jnp.float32(EPS))
    np.testing.assert_array_equal(out, x)
    assert np.max(np.abs(np.asarray(precondition(network_fn(model, params), cm, x, 1.0)) - np.asarray(x))) > 1e-3


def test_pseudo_huber_closed_form_and_ict_c():
    x, y = jnp.array([[3.0, 4.0], [0.0, 0.0]]), jnp.zeros((2, 2))
    np.testing.assert_allclose(pseudo_huber_distance(x, y, 0.1), [np.sqrt(25.01) - 0.1, 0.0], rtol=1e-6)
    assert ict_huber_c(3072) == pytest.approx(0.0299, abs=1e-4)  # CIFAR-10 (iCT)


def test_huber_c_zero_is_the_l2_norm_and_a_negative_c_is_icts():
    x, y = jnp.array([[3.0, 4.0], [1.0, 1.0]]), jnp.array([[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(pseudo_huber_distance(x, y, 0.0), [5.0, 0.0])
    grad = jax.grad(lambda a: jnp.sum(pseudo_huber_distance(a, y, 0.0)))(x)
    np.testing.assert_allclose(grad, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)  # finite at x = y
    c = schema.get_config().objective
    c.distance = "pseudo_huber"
    dist = lambda o: make_distance(o, 3072).fn(None, x, y)
    np.testing.assert_allclose(dist(c), pseudo_huber_distance(x, y, ict_huber_c(3072)))  # default
    c.huber_c = 0.0
    np.testing.assert_allclose(dist(c), [5.0, 0.0])


# --- the exact consistency function of the mixture's PF-ODE ----------------------------------

def exact_flow_map(x: jax.Array, t: jax.Array, steps: int = 128) -> jax.Array:
    """x at sigma_min of the ODE started at (x, t), per sample, with a fine Heun grid."""
    def one(xi, ti):
        sigmas = schedules.karras_sigma(jnp.arange(steps), steps, EPS, ti, 7.0)
        return ode.integrate(GMM.denoise, xi[None], sigmas, "heun")[0]
    return jax.vmap(one)(x, t)


def _inputs(xin, c_noise):
    t = jnp.exp(4 * c_noise)
    return xin * jnp.sqrt(t**2 + SD**2)[:, None], t  # undo c_in


class ExactConsistency(nn.Module):
    """F such that c_skip x + c_out F is the exact flow map (a parameter-free 'network')."""

    @nn.compact
    def __call__(self, xin, c_noise, labels=None, *, train=False):
        x, t = _inputs(xin, c_noise)
        c_skip, c_out, _, _ = consistency_scalings(t[:, None], SD, EPS)
        return (exact_flow_map(x, t) - c_skip * x) / jnp.where(c_out == 0, 1.0, c_out)


class ExactDenoiser(nn.Module):
    """F such that the EDM preconditioning gives the mixture's exact denoiser."""

    @nn.compact
    def __call__(self, xin, c_noise, labels=None, *, train=False):
        x, s = _inputs(xin, c_noise)
        c_skip, c_out, _, _ = edm_scalings(s[:, None], SD)
        return (GMM.denoise(x, s) - c_skip * x) / c_out


class DenoiserAsConsistency(ExactDenoiser):
    """A wrong consistency function: the one-step denoiser E[x0 | x_t], not the flow map."""

    @nn.compact
    def __call__(self, xin, c_noise, labels=None, *, train=False):
        x, t = _inputs(xin, c_noise)
        c_skip, c_out, _, _ = consistency_scalings(t[:, None], SD, EPS)
        return (GMM.denoise(x, t) - c_skip * x) / jnp.where(c_out == 0, 1.0, c_out)


def _cd_loss(student: nn.Module, solver: str = "heun", num_scales: int = 18, substeps: int = 1) -> float:
    c = schema.get_config()
    c.objective.name, c.objective.num_scales, c.objective.solver = "cd", num_scales, solver
    c.objective.teacher_substeps = substeps
    objective = make_objective(c, student, ExactDenoiser(), dim=2)
    x = jnp.asarray(GMM.sample(128, np.random.default_rng(0)))
    value, metrics = objective.loss({}, None, objective.frozen_inputs({}), {"x": x}, jax.random.key(0), 0)
    assert int(metrics["num_scales"]) == num_scales
    return float(value)


def test_cd_loss_of_the_exact_consistency_function_is_nearly_zero():
    exact = _cd_loss(ExactConsistency())
    wrong = _cd_loss(DenoiserAsConsistency())
    assert exact < 1e-5 and exact < 3e-3 * wrong, (exact, wrong)
    # What is left is the teacher's one-step truncation error: it vanishes as the grid refines,
    # and is larger for Euler than for Heun steps.
    assert _cd_loss(ExactConsistency(), num_scales=72) < exact / 10
    assert _cd_loss(ExactConsistency(), "euler") > 3 * exact
    # K teacher substeps per interval: Heun's local error ~ h^3 / K^2, so 4 substeps cut the
    # squared residual by ~256 (383x measured)
    assert _cd_loss(ExactConsistency(), substeps=4) < exact / 100


def test_ct_target_is_the_same_noise_at_the_lower_sigma():
    """CT compares f(x + t_hi z, t_hi) with f(x + t_lo z, t_lo): with f = the identity plus a
    record of its inputs we can read the pair the loss used."""
    seen = {}

    class Recorder(nn.Module):
        @nn.compact
        def __call__(self, xin, c_noise, labels=None, *, train=False):
            x, t = _inputs(xin, c_noise)
            seen.setdefault("calls", []).append((x, t))
            return jnp.zeros_like(xin)

    c = schema.get_config()
    c.objective.name = "ct"
    objective = make_objective(c, Recorder(), dim=2)
    data = jnp.asarray(GMM.sample(64, np.random.default_rng(1)))
    objective.loss({}, {}, objective.frozen_inputs(), {"x": data}, jax.random.key(3), 0)
    (x_hi, t_hi), (x_lo, t_lo) = seen["calls"]
    assert np.all(np.asarray(t_hi) > np.asarray(t_lo))
    z_hi = (x_hi - data) / t_hi[:, None]
    z_lo = (x_lo - data) / t_lo[:, None]
    np.testing.assert_allclose(z_hi, z_lo, rtol=2e-3, atol=2e-3)
