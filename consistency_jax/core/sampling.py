"""Samplers: one-step and multistep consistency sampling, and the teacher's PF-ODE sampler."""

import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from consistency_jax.core import editing, ode
from consistency_jax.core.schedules import karras_sigma, karras_sigmas

ConsistencyFn = Callable[[jax.Array, jax.Array], jax.Array]  # f(x, t) -> x0_hat


def sample_labels(start: int, count: int, num_classes: int, labels: Sequence[int] = ()) -> np.ndarray:
    """Class labels of samples start, ..., start + count - 1: sample i gets i % num_classes
    (balanced over the classes), or labels[i % len(labels)] for a given list."""
    i = np.arange(start, start + count)
    return np.asarray(labels, np.int32)[i % len(labels)] if len(labels) else (i % num_classes).astype(np.int32)


def check_sample_labels(labels: Sequence[int], num_classes: int) -> None:
    """Labels must be integers in [0, num_classes)."""
    bad = [v for v in labels if not isinstance(v, int) or not 0 <= v < num_classes]
    if bad:
        raise ValueError(f"labels must be class indices in [0, {num_classes}), got {bad}.")


def lcm_sigmas(num_steps: int, num_scales: int, sigma_min: float, sigma_max: float, rho: float) -> tuple[float, ...]:
    """The `num_steps` sigmas of few-step sampling on the student's N-point training grid:
    grid points floor(j (N - 1) / num_steps), j = 0 .. num_steps - 1, sigma_max first
    (diffusers `LCMScheduler.set_timesteps`, evenly spaced over the grid, PR #5836)."""
    idx = [j * (num_scales - 1) // num_steps for j in range(num_steps)]
    return tuple(float(karras_sigma(i, num_scales, sigma_min, sigma_max, rho)) for i in idx)


def check_multistep_sigmas(sigmas: Sequence[float], sigma_min: float, sigma_max: float) -> None:
    """Multistep sigmas must start at sigma_max, decrease strictly and stay above sigma_min."""
    s = [float(v) for v in sigmas]
    if not s:
        raise ValueError("Multistep sampling needs at least one sigma (sigma_max).")
    if any(b >= a for a, b in zip(s, s[1:])):
        raise ValueError(f"Multistep sigmas must be strictly decreasing, got {s}.")
    if s[-1] < sigma_min or s[0] > sigma_max:
        raise ValueError(f"Multistep sigmas must lie in [sigma_min={sigma_min}, sigma_max={sigma_max}], got {s}.")


def multistep_sample(
    f: ConsistencyFn,
    key: jax.Array,
    shape: tuple[int, ...],
    sigmas: Sequence[float],
    sigma_min: float,
    clip: bool = False,
) -> jax.Array:
    """CM Alg. 1: x0 = f(sigma_0 z, sigma_0); then x = x0 + sqrt(tau^2 - eps^2) z, x0 = f(x, tau).

    `sigmas` is a decreasing list starting at sigma_max; one entry is one-step sampling. The
    first noise is drawn from `key` itself, as `teacher_sample` does, so both start from one x_T.
    """
    return editing.edit(f, key, jnp.zeros(shape), None, sigmas, sigma_min, clip)  # Alg. 4 keeping nothing


def check_trigflow_steps(ts: Sequence[float], t_max: float) -> None:
    """TrigFlow multistep times: t_max first, then strictly decreasing, all in (0, t_max]."""
    t = [float(v) for v in ts]
    if not t:
        raise ValueError("TrigFlow sampling needs at least one time (t_max).")
    if any(b >= a for a, b in zip(t, t[1:])) or t[-1] <= 0 or t[0] > t_max:
        raise ValueError(
            f"TrigFlow times must decrease strictly within (0, t_max={t_max:.4f}], got {t}."
        )


def trigflow_sample(
    f: ConsistencyFn,
    key: jax.Array,
    shape: tuple[int, ...],
    ts: Sequence[float],
    sigma_data: float,
    sigma_max: float,
    clip: bool = False,
) -> jax.Array:
    """sCM's sampler: x0 = f(x_T, t_max), then x = cos t x0 + sin t z, z ~ N(0, sigma_d^2 I),
    x0 = f(x, t) for each later t (sCM, one- and two-step sampling).

    ts[0] is t_max = arctan(sigma_max / sigma_d); x_T = cos t_max sigma_max n with n drawn from
    `key` itself, the teacher's x_T of `teacher_sample` in TrigFlow's coordinates (x_t = cos t x_sigma).
    """
    t_max = ts[0]
    x = math.cos(t_max) * sigma_max * jax.random.normal(key, shape)
    x0 = f(x, jnp.float32(t_max))
    for i, t in enumerate(ts[1:], start=1):
        x0 = jnp.clip(x0, -1, 1) if clip else x0
        z = sigma_data * jax.random.normal(jax.random.fold_in(key, i), shape)
        x = math.cos(t) * x0 + math.sin(t) * z
        x0 = f(x, jnp.float32(t))
    return jnp.clip(x0, -1, 1) if clip else x0


def meanflow_sample(
    u: Callable[[jax.Array, jax.Array, jax.Array], jax.Array], e: jax.Array,
    ts: Sequence[float] = (1.0, 0.0), clip: bool = False,
) -> jax.Array:
    """z_r = z_t - (t - r) u(z_t, t, r) along ts from 1 (noise e) to 0: one step z_0 = e - u(e, 1, 0)
    (MeanFlow `solver_step`)."""
    z = e
    for t, r in zip(ts[:-1], ts[1:]):
        tt, rr = jnp.full(e.shape[:1], t, jnp.float32), jnp.full(e.shape[:1], r, jnp.float32)
        z = z - (t - r) * u(z, tt, rr)
    return jnp.clip(z, -1, 1) if clip else z


def teacher_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float) -> jax.Array:
    """The Karras grid of `num_steps` sigmas followed by 0 (EDM Alg. 1: 2 num_steps - 1 evaluations)."""
    return jnp.append(karras_sigmas(num_steps, sigma_min, sigma_max, rho), 0.0)


TEACHER_SOLVERS = (*ode.STEPS, "stochastic")


@dataclasses.dataclass(frozen=True)
class Churn:
    """EDM's stochastic sampler settings (EDM Alg. 2): S_churn, S_tmin, S_tmax, S_noise."""

    s_churn: float = 0.0
    s_min: float = 0.0
    s_max: float = float("inf")
    s_noise: float = 1.0


def teacher_sample(
    denoise: ode.Denoiser,
    key: jax.Array,
    shape: tuple[int, ...],
    sigmas: jax.Array,
    solver: str = "heun",
    clip: bool = False,
    churn: Churn = Churn(),
) -> jax.Array:
    """Integrate the teacher's PF-ODE from sigmas[0] z to sigmas[-1] (EDM Alg. 1), or with
    solver='stochastic' run EDM's stochastic sampler (Alg. 2, its noise from fold_in(key, 1))."""
    x = sigmas[0] * jax.random.normal(key, shape)
    if solver == "stochastic":
        x = ode.edm_stochastic_sample(
            denoise, x, sigmas, jax.random.fold_in(key, 1), churn.s_churn, churn.s_min,
            churn.s_max, churn.s_noise,
        )
    else:
        x = ode.integrate(denoise, x, sigmas, solver)
    return jnp.clip(x, -1, 1) if clip else x
