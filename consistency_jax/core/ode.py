"""The probability-flow ODE dx/dsigma = (x - D(x, sigma)) / sigma and its solvers (EDM Alg. 1, 2).

A denoiser is any callable `denoise(x, sigma) -> x0_hat` with sigma a scalar array (or [B]).
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from consistency_jax.core.arrays import per_sample

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]
SOLVERS = ("euler", "heun")


def pf_ode_drift(denoise: Denoiser, x: jax.Array, sigma: jax.Array) -> jax.Array:
    """dx/dsigma = (x - D(x, sigma)) / sigma (EDM eq. 3 with sigma(t) = t)."""
    return (x - denoise(x, sigma)) / per_sample(sigma, x)


def trigflow_drift(net: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array, t: jax.Array,
                   sigma_data: float) -> jax.Array:
    """dx_t/dt = sigma_d F(x_t / sigma_d, t): TrigFlow's PF-ODE for its network F (sCM TrigFlow)."""
    t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), x.shape[:1])
    return sigma_data * net(x / sigma_data, t)


def euler_step(denoise: Denoiser, x: jax.Array, sigma: jax.Array, sigma_next: jax.Array) -> jax.Array:
    """x + (sigma_next - sigma) d(x, sigma) (EDM Alg. 1, line 5)."""
    return x + per_sample(sigma_next - sigma, x) * pf_ode_drift(denoise, x, sigma)


def heun_step(denoise: Denoiser, x: jax.Array, sigma: jax.Array, sigma_next: jax.Array) -> jax.Array:
    """Euler step plus the trapezoidal correction when sigma_next > 0 (EDM Alg. 1, lines 5-8).

    With a scalar sigma_next = 0 the step is Euler (one evaluation); per-sample sigmas must be > 0.
    """
    d = pf_ode_drift(denoise, x, sigma)
    h = per_sample(sigma_next - sigma, x)
    x_euler = x + h * d

    def corrected() -> jax.Array:
        return x + h * (d + pf_ode_drift(denoise, x_euler, sigma_next)) / 2

    if jnp.ndim(sigma_next) == 0:
        return jax.lax.cond(sigma_next > 0, corrected, lambda: x_euler)
    return corrected()


STEPS = {"euler": euler_step, "heun": heun_step}


def solver_step(solver: str) -> Callable[..., jax.Array]:
    """The step function named `solver` ('euler' or 'heun')."""
    if solver not in STEPS:
        raise ValueError(f"Unknown ODE solver {solver!r}; choose one of {sorted(STEPS)}.")
    return STEPS[solver]


def check_sigma_grid(sigmas: jax.Array) -> None:
    """Reject a grid that is not 1-D, has fewer than 2 points, is not strictly decreasing or is negative."""
    if isinstance(sigmas, jax.core.Tracer):
        return  # checked where it is concrete
    s = np.asarray(sigmas)
    if s.ndim != 1 or s.size < 2:
        raise ValueError(f"sigmas must be a 1-D grid of at least 2 values, got shape {s.shape}.")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"sigmas must be finite and >= 0, got {s}.")
    if np.any(np.diff(s) >= 0):
        raise ValueError(
            f"sigmas must be strictly decreasing (sigma_max first, e.g. ending at 0), got {s}; "
            "reverse an increasing grid."
        )


@functools.partial(jax.jit, static_argnames=("denoise", "solver"))
def _integrate(denoise: Denoiser, x: jax.Array, sigmas: jax.Array, solver: str) -> jax.Array:
    step = solver_step(solver)

    def body(x, pair):
        return step(denoise, x, pair[0], pair[1]), None

    x, _ = jax.lax.scan(body, x, jnp.stack([sigmas[:-1], sigmas[1:]], axis=1))
    return x


def integrate(denoise: Denoiser, x: jax.Array, sigmas: jax.Array, solver: str = "heun") -> jax.Array:
    """Solve the PF-ODE from sigmas[0] to sigmas[-1] over a decreasing grid; jitted, batched.

    With solver='heun' and a grid ending at 0 the last step is Euler, so a Karras grid of 18
    sigmas plus 0 costs 35 evaluations (EDM Alg. 1).
    """
    check_sigma_grid(sigmas)
    solver_step(solver)
    return _integrate(denoise, x, jnp.asarray(sigmas, jnp.float32), solver)


@functools.partial(jax.jit, static_argnames=("denoise",))
def _edm_stochastic(denoise, x, sigmas, key, s_churn, s_min, s_max, s_noise):
    num_steps = sigmas.shape[0] - 1
    gamma_max = jnp.minimum(s_churn / num_steps, jnp.sqrt(2.0) - 1)

    def body(x, inputs):
        sigma, sigma_next, k = inputs
        gamma = jnp.where((sigma >= s_min) & (sigma <= s_max), gamma_max, 0.0)
        sigma_hat = sigma + gamma * sigma
        noise = jax.random.normal(k, x.shape, x.dtype)
        # sqrt(sigma_hat^2 - sigma^2), written so that gamma = 0 adds exactly no noise
        x_hat = x + sigma * jnp.sqrt(gamma * (2 + gamma)) * s_noise * noise
        return heun_step(denoise, x_hat, sigma_hat, sigma_next), None

    keys = jax.random.split(key, num_steps)
    x, _ = jax.lax.scan(body, x, (sigmas[:-1], sigmas[1:], keys))
    return x


def edm_stochastic_sample(
    denoise: Denoiser,
    x: jax.Array,
    sigmas: jax.Array,
    key: jax.Array,
    s_churn: float = 0.0,
    s_min: float = 0.0,
    s_max: float = float("inf"),
    s_noise: float = 1.0,
) -> jax.Array:
    """EDM's stochastic sampler (EDM Alg. 2): churn noise in [s_min, s_max], then a Heun step.

    With s_churn = 0 it is the deterministic Heun integrator.
    """
    check_sigma_grid(sigmas)
    return _edm_stochastic(
        denoise, x, jnp.asarray(sigmas, jnp.float32), key, s_churn, s_min, s_max, s_noise
    )
