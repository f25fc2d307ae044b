"""Classifier-free guidance (CFG): label dropout in training, the guided denoiser in sampling
and in guided consistency distillation (LCM).

Convention (one for the whole project): D_w = D_uncond + w (D_cond - D_uncond), so w = 1 is the
conditional denoiser, w = 0 the unconditional one and w > 1 guides (Ho & Salimans 2022 eq. 6
with their w_HS = w - 1). LCM writes x0_c + w_LCM (x0_c - x0_u), i.e. w_LCM = w - 1: LCM's
w_LCM ~ U[5, 15] is w ~ U[6, 16] here.
"""

import jax
import jax.numpy as jnp

from consistency_jax.core.arrays import per_sample
from consistency_jax.core.ode import Denoiser


def guided_denoiser(cond: Denoiser, uncond: Denoiser, w: float | jax.Array) -> Denoiser:
    """D_w(x, sigma) = D_u + w (D_c - D_u) (CFG, Ho & Salimans 2022 eq. 6, w = their 1 + w);
    w a number or per sample [B]. A Python w of exactly 1 or 0 is the conditional or the
    unconditional denoiser itself (one network evaluation, bitwise equal)."""
    if isinstance(w, int | float) and w in (0, 1):
        return cond if w == 1 else uncond

    def denoise(x: jax.Array, sigma: jax.Array) -> jax.Array:
        d_u = uncond(x, sigma)
        return d_u + per_sample(w, x) * (cond(x, sigma) - d_u)

    return denoise


def drop_labels(key: jax.Array, labels: jax.Array, p: float, null_label: int) -> jax.Array:
    """Each label replaced by the null label with probability p (CFG's joint training,
    Ho & Salimans 2022 Alg. 1: p_uncond)."""
    return jnp.where(jax.random.uniform(key, labels.shape) < p, null_label, labels)


def uniform_guidance(key: jax.Array, batch: int, w_min: float, w_max: float) -> jax.Array:
    """w ~ U[w_min, w_max] per example (LCM Alg. 1: omega ~ U[omega_min, omega_max])."""
    return jax.random.uniform(key, (batch,), minval=w_min, maxval=w_max)
