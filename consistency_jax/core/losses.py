"""One loss per paper, on arrays: EDM denoising score matching, CD, CT/iCT and ECT.

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
from consistency_jax.core.parametrization import edm_scalings

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
    """sqrt(||x - y||_2^2 + c^2) - c on the per-sample norm (iCT Sec. 3.3)."""
    return jnp.sqrt(jnp.sum(_flat(x - y) ** 2, axis=1) + c**2) - c


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
    num_scales: jax.Array, grid: Grid, substeps: int = 1,
) -> jax.Array:
    """x_hat_{t_n}: the teacher's ODE from t_{n+1} to t_n in `substeps` solver steps along the
    (N - 1) K + 1 point Karras grid that refines the N-point one (K = 1: CM eq. 6)."""
    fine_n = (num_scales - 1) * substeps + 1
    x = x_hi
    for j in range(substeps):
        s, s_next = (schedules.karras_sigma(i * substeps + j + d, fine_n, *grid) for d in (0, 1))
        x = step(teacher, x, s, s_next)
    return x


def ct_loss(
    f: Denoiser, f_target: Denoiser, x: jax.Array, z: jax.Array, t_hi: jax.Array, t_lo: jax.Array,
    weight: jax.Array, distance: Distance,
) -> jax.Array:
    """Consistency training (CM Alg. 3, eq. 10; iCT; ECT on continuous pairs): both points on the
    data's own ODE, x + t z with the same z (the Euler step of CM eq. 9)."""
    x_hi = x + per_sample(t_hi, x) * z
    x_lo = x + per_sample(t_lo, x) * z
    return consistency_loss(f, f_target, x_hi, t_hi, x_lo, t_lo, weight, distance)
