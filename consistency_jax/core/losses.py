"""One loss per paper, on arrays: EDM denoising score matching, CD, CT/iCT, ECT, sCT/sCD (and rCM's
DMD term), MeanFlow.

Each loss takes its random draws (noise levels, noise) as arguments and the networks as
callables (`consistency_jax.core.parametrization.denoiser`), so it is the paper's formula alone;
`consistency_jax.training.objectives` draws them from a config's schedules. The shared helpers
below give the time pairs, the weightings lambda and the distances d.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from consistency_jax.core import schedules
from consistency_jax.core.arrays import per_sample
from consistency_jax.core.ode import Denoiser
from consistency_jax.core.parametrization import NetworkFn, edm_scalings, trigflow_time

Distance = Callable[[jax.Array, jax.Array], jax.Array]  # (x, y) -> [B]
Grid = tuple[float, float, float]  # (sigma_min, sigma_max, rho) of the Karras grid

# --- distances d(x, y), per sample ---------------------------------------------------------------


def _flat(x: jax.Array) -> jax.Array:
    return x.reshape(x.shape[0], -1)


def l2_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sample mean squared difference (the official CM code's 'l2')."""
    return jnp.mean(_flat(x - y) ** 2, axis=1)


def l1_distance(x: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sample mean absolute difference (the official CM code's 'l1')."""
    return jnp.mean(jnp.abs(_flat(x - y)), axis=1)


def pseudo_huber_distance(x: jax.Array, y: jax.Array, c: float) -> jax.Array:
    """sqrt(||x - y||_2^2 + c^2) - c on the per-sample norm (iCT Sec. 3.3); c = 0 is the L2 norm
    (ECT), its gradient at x = y taken as 0 rather than sqrt's infinite one."""
    r = jnp.sum(_flat(x - y) ** 2, axis=1) + c**2
    safe = jnp.where(r > 0, r, 1.0)
    return jnp.where(r > 0, jnp.sqrt(safe), 0.0) - c


def ict_huber_c(dim: int) -> float:
    """c = 0.00054 sqrt(d) (iCT Sec. 3.3)."""
    return 0.00054 * math.sqrt(dim)


# --- weightings lambda of a pair (t_hi, t_lo) ----------------------------------------------------

# uniform (CM), or 1 / (sigma_{i+1} - sigma_i) (iCT Sec. 3.1)
WEIGHTINGS: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "uniform": lambda t_hi, t_lo: jnp.ones_like(t_hi),
    "ict": lambda t_hi, t_lo: 1.0 / (t_hi - t_lo),
}

# --- time pairs (t_hi, t_lo), the larger first -----------------------------------------------------


def uniform_grid_pair(
    key: jax.Array, num_scales: jax.Array, grid: Grid, batch: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(t_{n+1}, t_n, n): a pair of the N-point Karras grid, n uniform (CM Alg. 2, 3)."""
    u = jax.random.uniform(key, (batch,))
    i = jnp.minimum(jnp.floor(u * (num_scales - 1)), num_scales - 2)
    return *_grid_pair(i, num_scales, grid), i


def lognormal_grid_pair(
    key: jax.Array, num_scales: jax.Array, max_scales: int, grid: Grid, p_mean: float, p_std: float,
    batch: int,
) -> tuple[jax.Array, jax.Array]:
    """(t_{n+1}, t_n): a pair of the N-point Karras grid, n from iCT's discretised lognormal
    (iCT Sec. 3.5; `max_scales` bounds N over the run, so the logits keep one shape)."""
    logits = schedules.ict_index_logits(num_scales, max_scales, *grid, p_mean, p_std)
    return _grid_pair(jax.random.categorical(key, logits, shape=(batch,)), num_scales, grid)


def _grid_pair(i: jax.Array, num_scales: jax.Array, grid: Grid) -> tuple[jax.Array, jax.Array]:
    return tuple(schedules.karras_sigma(i + d, num_scales, *grid) for d in (0, 1))


def ect_pair(
    key: jax.Array, stage: jax.Array, grid: Grid, p_mean: float, p_std: float, q: float, k: float,
    b: float, batch: int,
) -> tuple[jax.Array, jax.Array]:
    """(t, r): ln t ~ N(p_mean, p_std^2) clipped to [sigma_min, sigma_max], r from ECT's mapping at
    the curriculum's stage (ECT eq. 18), at least sigma_min (where f is the identity)."""
    sigma_min, sigma_max, _ = grid
    t = jnp.clip(schedules.lognormal_sigma(key, (batch,), p_mean, p_std), sigma_min, sigma_max)
    r = jnp.maximum(schedules.ect_lower_sigma(t, stage, q, k, b), sigma_min)
    return t, r


# --- losses -----------------------------------------------------------------------------------------


def edm_loss(denoise: Denoiser, x: jax.Array, sigma: jax.Array, n: jax.Array, sigma_data: float) -> jax.Array:
    """E lambda(sigma) ||D(y + sigma n, sigma) - y||^2, lambda = 1 / c_out^2 (EDM eq. 2, 8)."""
    denoised = denoise(x + n * per_sample(sigma, x), sigma)
    weight = edm_scalings(sigma, sigma_data)[1] ** -2
    return jnp.mean(weight * l2_distance(denoised, x))


def consistency_loss(
    f: Denoiser, f_target: Denoiser, x_hi: jax.Array, t_hi: jax.Array, x_lo: jax.Array,
    t_lo: jax.Array, weight: jax.Array, distance: Distance,
) -> jax.Array:
    """E lambda(t_n) d(f_theta(x_{t_{n+1}}, t_{n+1}), sg f_theta-(x_{t_n}, t_n)) (CM eq. 7, 10).

    A pair with t_hi = t_lo (ECT's t clipped to sigma_min) carries no signal and weighs 0.
    """
    online = f(x_hi, t_hi)
    target = jax.lax.stop_gradient(f_target(x_lo, t_lo))
    weight = jnp.where(t_hi > t_lo, weight, 0.0)
    return jnp.mean(weight * distance(online, target))


def cd_loss(
    f: Denoiser, f_target: Denoiser, teacher_solve: Callable[[jax.Array], jax.Array], x: jax.Array,
    z: jax.Array, t_hi: jax.Array, t_lo: jax.Array, weight: jax.Array, distance: Distance,
) -> jax.Array:
    """Consistency distillation (CM Alg. 2, eq. 7): x_{t_n} is the teacher's ODE solution from
    x_{t_{n+1}} = x + t_{n+1} z (`teacher_solve`, see `teacher_ode_step`)."""
    x_hi = x + per_sample(t_hi, x) * z
    x_lo = jax.lax.stop_gradient(teacher_solve(x_hi))
    return consistency_loss(f, f_target, x_hi, t_hi, x_lo, t_lo, weight, distance)


def teacher_ode_step(
    step: Callable[..., jax.Array], teacher: Denoiser, x_hi: jax.Array, i: jax.Array,
    num_scales: jax.Array, grid: Grid, substeps: int = 1, skip: int = 1,
) -> jax.Array:
    """x_hat_{t_{n}}: the teacher's ODE from grid point i to i + skip of the N-point Karras grid
    (the skipping step k of LCM Sec. 4.3; skip = 1: CM eq. 6), in `substeps` solver steps of
    `skip` intervals each along the (N - 1) K + 1 point grid that refines the N-point one."""
    fine_n = (num_scales - 1) * substeps + 1
    x = x_hi
    for j in range(substeps):
        s, s_next = (
            schedules.karras_sigma(i * substeps + (j + d) * skip, fine_n, *grid) for d in (0, 1)
        )
        x = step(teacher, x, s, s_next)
    return x


def skip_grid_pair(
    key: jax.Array, num_scales: jax.Array, skip: int, grid: Grid, batch: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(t_{n+k}, t_n, i): grid points i and i + k of the N-point Karras grid (index 0 at
    sigma_max), i uniform in [0, N - 1 - k] (LCM Alg. 1 with the skipping step k; k = 1 is
    `uniform_grid_pair`)."""
    i = jax.random.randint(key, (batch,), 0, num_scales - skip).astype(jnp.float32)
    return (*(schedules.karras_sigma(i + d, num_scales, *grid) for d in (0, skip)), i)


def ct_loss(
    f: Denoiser, f_target: Denoiser, x: jax.Array, z: jax.Array, t_hi: jax.Array, t_lo: jax.Array,
    weight: jax.Array, distance: Distance,
) -> jax.Array:
    """Consistency training (CM Alg. 3, eq. 10; iCT; ECT on continuous pairs): both points on the
    data's own ODE, x + t z with the same z (the Euler step of CM eq. 9)."""
    x_hi = x + per_sample(t_hi, x) * z
    x_lo = x + per_sample(t_lo, x) * z
    return consistency_loss(f, f_target, x_hi, t_hi, x_lo, t_lo, weight, distance)


# --- sCM: continuous-time consistency on TrigFlow (sCT, sCD) ----------------------------------------

Velocity = Callable[[jax.Array, jax.Array], jax.Array]  # dx_t/dt at (x_t, t [B])


def scm_time(key: jax.Array, batch: int, p_mean: float, p_std: float, sigma_data: float) -> jax.Array:
    """t = arctan(e^tau / sigma_d), tau ~ N(p_mean, p_std^2) (sCM Alg. 1)."""
    return trigflow_time(schedules.lognormal_sigma(key, (batch,), p_mean, p_std), sigma_data)


def trigflow_noisy(x0: jax.Array, z: jax.Array, t: jax.Array) -> jax.Array:
    """x_t = cos t x0 + sin t z, z ~ N(0, sigma_d^2 I) (sCM TrigFlow)."""
    return per_sample(jnp.cos(t), x0) * x0 + per_sample(jnp.sin(t), x0) * z


def sct_velocity(x0: jax.Array, z: jax.Array, t: jax.Array) -> jax.Array:
    """dx_t/dt = cos t z - sin t x0: the data's own velocity (sCT, sCM Alg. 1)."""
    return per_sample(jnp.cos(t), x0) * z - per_sample(jnp.sin(t), x0) * x0


def trigflow_jvp(
    net: NetworkFn, x_t: jax.Array, t: jax.Array, dxt_dt: jax.Array, sigma_data: float
) -> tuple[jax.Array, jax.Array]:
    """F(x_t / sigma_d, t) and cos t sin t sigma_d dF/dt along dx_t/dt, by one JVP at
    (x_t / sigma_d, t) with the tangent (cos t sin t dx_t/dt, cos t sin t sigma_d) (sCM Alg. 1:
    the ordering that keeps the tangents small in low precision)."""
    cs = jnp.cos(t) * jnp.sin(t)
    return jax.jvp(net, (x_t / sigma_data, t), (per_sample(cs, x_t) * dxt_dt, cs * sigma_data))


def scm_tangent(
    f_net: jax.Array, cs_dnet: jax.Array, x_t: jax.Array, t: jax.Array, dxt_dt: jax.Array,
    warmup: jax.Array, sigma_data: float,
) -> jax.Array:
    """g = -cos^2 t (sigma_d F - dx_t/dt) - r cos t sin t (x_t + sigma_d dF/dt) (sCM Alg. 1), from
    `trigflow_jvp`'s F and cos t sin t sigma_d dF/dt; at r = 1 it is cos t df/dt."""
    cos, sin = per_sample(jnp.cos(t), x_t), per_sample(jnp.sin(t), x_t)
    return -(cos**2) * (sigma_data * f_net - dxt_dt) - warmup * (cos * sin * x_t + cs_dnet)


def tangent_norm(g: jax.Array, rms: bool = False) -> jax.Array:
    """||g|| per sample; with `rms` ||g|| / sqrt(D) (FastGen)."""
    return jnp.sqrt(jnp.mean(_flat(g) ** 2, axis=1) if rms else jnp.sum(_flat(g) ** 2, axis=1))


def normalize_tangent(g: jax.Array, c: float, rms: bool = False) -> jax.Array:
    """g / (||g|| + c) per sample (sCM Alg. 1), the norm `tangent_norm`'s."""
    return g / per_sample(tangent_norm(g, rms) + c, g)


def scm_loss(
    net: NetworkFn, net_target: NetworkFn, velocity: Velocity, x0: jax.Array, z: jax.Array,
    t: jax.Array, warmup: jax.Array, tangent_c: float, tangent_rms: bool, logvar: jax.Array,
    prior_weight: jax.Array, sigma_data: float,
) -> tuple[jax.Array, jax.Array]:
    """E (w(t) / e^{logvar(t)}) ||F_theta - F_theta- - g||^2 / D + logvar(t) (sCM Alg. 1 with the
    adaptive weighting logvar(t) = w_phi(t); w(t) the prior weight), and the batch's mean ||g||
    before normalisation (how far F_theta- is from consistent, beside the constant c).

    `net` and `net_target` are F_theta and F_theta- = sg(F_theta) (the same dropout mask) as
    callables (x_t / sigma_d, t) -> F; `velocity(x_t, t)` is dx_t/dt: the data's for sCT
    (`sct_velocity`), the teacher's PF-ODE for sCD (`ode.trigflow_drift`).
    """
    x_t = trigflow_noisy(x0, z, t)
    dxt_dt = jax.lax.stop_gradient(velocity(x_t, t))
    f_target, cs_dnet = trigflow_jvp(net_target, x_t, t, dxt_dt, sigma_data)
    g = jax.lax.stop_gradient(scm_tangent(f_target, cs_dnet, x_t, t, dxt_dt, warmup, sigma_data))
    target = jax.lax.stop_gradient(f_target + normalize_tangent(g, tangent_c, tangent_rms))
    mse = l2_distance(net(x_t / sigma_data, t), target)
    return jnp.mean(prior_weight * jnp.exp(-logvar) * mse + logvar), jnp.mean(tangent_norm(g))


def dmd_loss(x_hat: jax.Array, real: Denoiser, fake: Denoiser, sigma: jax.Array, n: jax.Array) -> jax.Array:
    """E ||x_hat - sg(x_hat - (D_fake - D_real) / w)||^2 / D at x_hat + sigma n, w = mean |x_hat -
    D_real| per sample: distribution matching's gradient of the reverse KL from the student's
    samples to the teacher's data, D_fake the denoiser of the student's own samples (DMD, Yin et
    al. 2024, arXiv 2311.18828; the regulariser rCM adds to sCD, Zheng et al. 2025, arXiv
    2510.08431, with its weight w)."""
    x_noisy = jax.lax.stop_gradient(x_hat + per_sample(sigma, x_hat) * n)
    d_real, d_fake = real(x_noisy, sigma), fake(x_noisy, sigma)
    w = jnp.mean(jnp.abs(_flat(jax.lax.stop_gradient(x_hat) - d_real)), axis=1)
    grad = (d_fake - d_real) / per_sample(jnp.maximum(w, 1e-5), x_hat)
    return jnp.mean(l2_distance(x_hat, jax.lax.stop_gradient(x_hat - grad)))


# --- MeanFlow: the average velocity u(z_t, r, t), t = 0 data and t = 1 noise ---------------------------

AverageVelocity = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]  # u(z_t, t [B], r [B])


def meanflow_pair(
    key: jax.Array, batch: int, p_mean: float, p_std: float, equal_fraction: float
) -> tuple[jax.Array, jax.Array]:
    """(t, r): two logit-normal draws sigmoid(N(p_mean, p_std^2)), t the larger; the first
    int(batch * equal_fraction) entries get r = t (MeanFlow `sample_tr`, its data_proportion)."""
    draws = jax.nn.sigmoid(p_mean + p_std * jax.random.normal(key, (2, batch)))
    t, r = jnp.max(draws, axis=0), jnp.min(draws, axis=0)
    return t, jnp.where(jnp.arange(batch) < int(batch * equal_fraction), t, r)


def meanflow_target(
    u: AverageVelocity, z_t: jax.Array, t: jax.Array, r: jax.Array, v: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """u(z_t, t, r) and sg(v - clip(t - r, 0, 1) du/dt), du/dt by one JVP with the tangent (v, 1, 0)
    (MeanFlow identity u = v - (t - r) du/dt; `MeanFlow.forward`)."""
    u_value, du_dt = jax.jvp(u, (z_t, t, r), (v, jnp.ones_like(t), jnp.zeros_like(r)))
    target = v - per_sample(jnp.clip(t - r, 0.0, 1.0), v) * du_dt
    return u_value, jax.lax.stop_gradient(target)


def meanflow_loss(
    u: AverageVelocity, velocity: Velocity, x: jax.Array, e: jax.Array, t: jax.Array, r: jax.Array,
    norm_p: float, norm_eps: float,
) -> jax.Array:
    """E ||u - u_tgt||^2 / sg(||u - u_tgt||^2 + eps)^p over z_t = (1 - t) x + t e (MeanFlow's loss
    and adaptive weighting, `MeanFlow.forward`); `velocity(z_t, t)` is v: e - x in training (the conditional
    velocity), the marginal one where known. The JVP pass and the loss's pass are the same call."""
    z_t = per_sample(1 - t, x) * x + per_sample(t, x) * e
    u_value, target = meanflow_target(u, z_t, t, r, jax.lax.stop_gradient(velocity(z_t, t)))
    loss = jnp.sum(_flat(u_value - target) ** 2, axis=1)
    return jnp.mean(loss / jax.lax.stop_gradient((loss + norm_eps) ** norm_p))

