"""How far a consistency model's f is from its teacher's flow map, noise level by noise level.

A consistency function maps every point x_sigma of a PF-ODE trajectory to the trajectory's end x_0
(CM Sec. 3). `flow_map_error` follows the teacher's ODE from x_T on a fine grid and measures, at
each requested sigma, the RMS (per element) of f(x_sigma, sigma) - x_0: where along the trajectory
a student is wrong, which the distance of its one-step samples to the data does not say. The
command over a trained run is `consistency_jax.jobs.flow_map`.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from consistency_jax.core import ode
from consistency_jax.core.arrays import per_sample
from consistency_jax.core.parametrization import trigflow_time
from consistency_jax.evaluation.samples import consistency_function, is_trigflow


def check_sigmas(sigmas: Sequence[float], grid: np.ndarray) -> None:
    """The noise levels must decrease within the teacher's grid (0, grid[0]]."""
    top = float(grid[0])
    if not sigmas or list(sigmas) != sorted(sigmas, reverse=True) or not 0 < min(sigmas) <= max(sigmas) <= top:
        raise ValueError(f"sigmas {list(sigmas)} must be decreasing noise levels in (0, {top:g}], the teacher's range.")


def flow_map_error(
    f: ode.Denoiser, teacher: ode.Denoiser, x_T: jax.Array, grid: jax.Array, sigmas: Sequence[float]
) -> np.ndarray:
    """RMS of f(x_sigma, sigma) - x_0 at each of `sigmas` (decreasing, inside the grid), x_sigma the
    teacher's Heun solution from x_T = x at grid[0] (a decreasing grid ending at 0) and x_0 its end.
    Each sigma is a point of the solve: the grid's points above it, then it."""
    check_sigmas(sigmas, grid)
    grid = np.asarray(grid, np.float64)
    x, start, states = x_T, grid[0], []
    for s in sigmas:
        segment = np.concatenate([[start], grid[(grid < start) & (grid > s)], [s]])
        x = ode.integrate(teacher, x, segment) if s < start else x
        states.append(x)
        start = s
    x0 = ode.integrate(teacher, x, np.concatenate([[start], grid[grid < start]]))
    errors = [f(x_s, jnp.full(x_s.shape[:1], s, jnp.float32)) - x0 for x_s, s in zip(states, sigmas)]
    return np.array([float(jnp.sqrt(jnp.mean(e**2))) for e in errors])


def sigma_consistency_fn(config, model, params) -> ode.Denoiser:
    """A run's consistency function in EDM's sigma units, f(x_sigma, sigma) -> x_0: an sCM run's
    f(cos t x_sigma, t) at t = arctan(sigma / sigma_d) (sCM App. B.2)."""
    f = consistency_function(config, model, params)
    if not is_trigflow(config):
        return f
    t = lambda sigma: trigflow_time(sigma, config.model.sigma_data)
    return lambda x, sigma: f(per_sample(jnp.cos(t(sigma)), x) * x, t(sigma))
