"""Noise schedules: the Karras sigma grid, the CT/iCT discretisation curricula, index sampling.

Grid index convention (as in the EDM and consistency-model code): index 0 is sigma_max and the
grid decreases; a training pair is (karras_sigma(i), karras_sigma(i + 1)), the larger sigma first.
Every function accepts Python numbers or (traced) JAX arrays, so curricula run inside `jit`.
"""

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erf


def karras_sigma(i: jax.Array, n: jax.Array, sigma_min: float, sigma_max: float, rho: float) -> jax.Array:
    """sigma_i of an n-point Karras grid, i = 0 giving sigma_max (EDM eq. 5)."""
    i = jnp.asarray(i, jnp.float32)
    n = jnp.asarray(n, jnp.float32)
    inv_rho = 1.0 / rho
    frac = i / jnp.maximum(n - 1, 1)
    sigma = (sigma_max**inv_rho + frac * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    sigma = jnp.where(i <= 0, sigma_max, sigma)  # exact endpoints despite float32 rounding
    return jnp.where(i >= n - 1, sigma_min, sigma)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float) -> jax.Array:
    """The whole decreasing n-point Karras grid, sigma_max ... sigma_min."""
    if n < 2:
        raise ValueError(f"A Karras grid needs at least 2 points, got n={n}.")
    return karras_sigma(jnp.arange(n), n, sigma_min, sigma_max, rho)


def ct_num_scales(step: jax.Array, total_steps: int, s0: int, s1: int) -> jax.Array:
    """N(k) of original CT: ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1 (CM paper App. C)."""
    k = jnp.asarray(step, jnp.float32)
    s = jnp.ceil(jnp.sqrt(k / total_steps * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1)
    return (jnp.maximum(s, 1) + 1).astype(jnp.int32)


def ct_target_ema(num_scales: jax.Array, s0: int, mu0: float) -> jax.Array:
    """mu(k) = exp(s0 ln(mu0) / (N(k) - 1)) (CM paper App. C, as the official code divides)."""
    return jnp.exp(s0 * jnp.log(mu0) / (jnp.asarray(num_scales, jnp.float32) - 1))


def ict_num_scales(step: jax.Array, total_steps: int, s0: int, s1: int) -> jax.Array:
    """N(k) = min(s0 2^floor(k/K'), s1) + 1, K' = floor(K / (log2 floor(s1/s0) + 1)) (iCT eq. 7)."""
    stage_len = max(math.floor(total_steps / (math.log2(s1 // s0) + 1)), 1)
    stage = jnp.asarray(step, jnp.int32) // stage_len
    return (jnp.minimum(s0 * 2 ** jnp.minimum(stage, 30), s1) + 1).astype(jnp.int32)


def ict_index_logits(
    num_scales: jax.Array, max_scales: int, sigma_min: float, sigma_max: float, rho: float,
    p_mean: float, p_std: float,
) -> jax.Array:
    """Log-probabilities of pair index i (of max_scales - 1) under iCT's discretised lognormal.

    p(i) is the N(p_mean, p_std^2) mass of ln sigma between the pair's two sigmas (iCT Sec. 3.5);
    indices past the current grid (i >= num_scales - 1) get -inf.
    """
    i = jnp.arange(max_scales - 1)
    hi = karras_sigma(i, num_scales, sigma_min, sigma_max, rho)
    lo = karras_sigma(i + 1, num_scales, sigma_min, sigma_max, rho)
    cdf = lambda s: erf((jnp.log(s) - p_mean) / (jnp.sqrt(2.0) * p_std))
    mass = jnp.maximum(cdf(hi) - cdf(lo), 1e-30)
    return jnp.where(i < num_scales - 1, jnp.log(mass), -jnp.inf)


def lognormal_sigma(key: jax.Array, shape: tuple[int, ...], p_mean: float, p_std: float) -> jax.Array:
    """sigma with ln sigma ~ N(p_mean, p_std^2) (EDM Sec. 5, training noise distribution)."""
    return jnp.exp(p_mean + p_std * jax.random.normal(key, shape))


def ect_stage(step: jax.Array, stage_steps: int) -> jax.Array:
    """ECT's curriculum stage: floor(k / stage_steps), the gap shrinking by q at each; 0: stage 0."""
    step = jnp.asarray(step, jnp.int32)
    return step // stage_steps if stage_steps > 0 else jnp.zeros_like(step)


def ect_lower_sigma(t: jax.Array, stage: jax.Array, q: float, k: float, b: float) -> jax.Array:
    """r = t (1 - q^-(stage+1) (1 + k sigmoid(-b t))), ECT's mapping p(r | t) (ECT eq. 18)."""
    decay = jnp.asarray(q, jnp.float32) ** -(jnp.asarray(stage, jnp.float32) + 1)
    return jnp.maximum(t * (1 - decay * (1 + k * jax.nn.sigmoid(-b * t))), 0.0)
