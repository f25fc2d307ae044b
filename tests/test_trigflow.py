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
    edm_network,
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
    value, tangent_norm = losses.scm_loss(net, net, teacher_velocity, x0, z, t, 1.0, tangent_c, False,
                                          jnp.zeros_like(t), jnp.ones_like(t), SD)
    # the logged ||g|| is the mean per-sample norm of the unnormalised tangent
    np.testing.assert_allclose(tangent_norm, jnp.mean(jnp.linalg.norm(g, axis=1)), rtol=1e-5, atol=1e-9)
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


def test_a_trigflow_network_seen_as_edm_and_back_is_itself():
    """edm_network(., 'trigflow') inverts edm_network_as_trigflow: the EDM F of the exact
    denoiser's TrigFlow F is the EDM F again, and its denoiser the mixture's exact one."""
    y = jax.random.normal(jax.random.key(2), (64, 2))
    x = 2.0 * jax.random.normal(jax.random.key(3), (64, 2))
    back = edm_network(TEACHER, "trigflow", SD)
    for sigma in (0.01, 0.3, 1.0, 5.0, 80.0):
        c_noise = jnp.full((64,), 0.25 * np.log(sigma), jnp.float32)
        np.testing.assert_allclose(back(y, c_noise), edm_gmm_net(y, c_noise), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(precondition(back, EDM, x, sigma), GMM.denoise(x, sigma), atol=1e-4 * max(1, sigma))
    assert edm_network(edm_gmm_net, "edm", SD) is edm_gmm_net


def test_edm_loss_of_a_trigflow_network_is_the_trigflow_diffusion_loss():
    """For any F: lambda(sigma) ||D(x0 + sigma n) - x0||^2 = ||sigma_d F(x_t / sigma_d, t) -
    (cos t z - sin t x0)||^2 / sigma_d^2 with t = arctan(sigma / sigma_d), z = sigma_d n,
    x_t = cos t x0 + sin t z (sCM's TrigFlow diffusion loss): an EDM run of a TrigFlow network
    trains a TrigFlow teacher."""
    k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
    x0 = jax.random.normal(k1, (256, 2))
    n = jax.random.normal(k2, (256, 2))
    sigma = jnp.exp(-1.0 + 1.4 * jax.random.normal(k3, (256,)))
    F = lambda y, t: jnp.tanh(y * (1 + t[:, None]) + jnp.sin(3 * t)[:, None])  # any network of t
    edm = losses.edm_loss(precondition_fn(edm_network(F, "trigflow", SD)), x0, sigma, n, SD)
    t = trigflow_time(sigma, SD)[:, None]
    z = SD * n
    x_t = jnp.cos(t) * x0 + jnp.sin(t) * z
    trig = jnp.mean((SD * F(x_t / SD, t[:, 0]) - (jnp.cos(t) * z - jnp.sin(t) * x0)) ** 2)
    np.testing.assert_allclose(SD**2 * edm, trig, rtol=1e-4)
    wrong = losses.edm_loss(precondition_fn(F), x0, sigma, n, SD)  # F taken as an EDM network
    assert abs(float(SD**2 * wrong) - float(trig)) > 0.05 * float(trig)


def precondition_fn(net):
    return lambda x, sigma: precondition(net, EDM, x, sigma)


@pytest.mark.parametrize(
    "objective, student, teacher, ok",
    [("scd", "trigflow", "trigflow", True), ("scd", "edm", "edm", True), ("scd", "trigflow", "edm", False),
     ("sct", "edm", "trigflow", False), ("cd", "edm", "edm", True), ("ect", "edm", "trigflow", False)],
)
def test_a_teacher_serves_only_students_of_its_time_input(objective, student, teacher, ok):
    from consistency_jax.errors import ConfigError
    from consistency_jax.jobs.teacher import check_teacher_kind

    if ok:
        check_teacher_kind(objective, student, teacher, "runs/t")
    else:
        with pytest.raises(ConfigError, match=f"takes time as model.scm_network='{teacher}'"):
            check_teacher_kind(objective, student, teacher, "runs/t")


def test_trigflow_time_input_only_where_it_means_something():
    from configs import cifar10_trigflow, digits_cd
    from consistency_jax.config import checks
    from consistency_jax.errors import ConfigError

    checks.validate(cifar10_trigflow.get_config())
    c = digits_cd.get_config()
    c.objective.teacher_workdir = "runs/edm"
    c.model.scm_network = "trigflow"
    with pytest.raises(ConfigError, match="scm_network='trigflow' applies to EDM teachers and sCT/sCD"):
        checks.validate(c)
    c = cifar10_trigflow.get_config()
    c.network.name = "adm"
    with pytest.raises(ConfigError, match="double_norm applies to the ddpmpp and ncsnpp"):
        checks.validate(c)


def test_double_normalization_ignores_the_scale_of_the_time_projection():
    """norm(x) pnorm(s(t)) + pnorm(b(t)): scaling every block's affine projection by 10 leaves the
    U-Net unchanged; with EDM's added embedding the same scaling changes it."""
    cfg = schema.get_config().network
    cfg.name = "ddpmpp"
    cfg.unet.update(model_channels=8, channel_mult=(1, 2), num_blocks=1, attn_resolutions=())
    x = jax.random.normal(jax.random.key(5), (2, 8, 8, 1))
    c_noise = jnp.array([0.3, 1.2])
    for double_norm in (True, False):
        cfg.unet.double_norm = double_norm
        model = build_network(cfg)
        shapes = jax.eval_shape(model.init, jax.random.key(6), x, c_noise)["params"]
        rng = np.random.default_rng(7)  # random weights (numpy: no compile per shape)
        params = jax.tree.map(lambda p, rng=rng: 0.3 * rng.standard_normal(p.shape, np.float32), shapes)
        scaled = jax.tree_util.tree_map_with_path(
            lambda path, p: 10 * p if any(getattr(k, "key", None) == "affine" for k in path) else p, params
        )
        apply = jax.jit(lambda p, model=model: network_fn(model, p)(x, c_noise))
        out, out_scaled = apply(params), apply(scaled)
        change = float(jnp.max(jnp.abs(out_scaled - out)) / jnp.max(jnp.abs(out)))
        assert (change < 1e-3) if double_norm else (change > 0.1), (double_norm, change)
