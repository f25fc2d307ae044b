"""Broadcasting a per-sample noise level against a batch."""

import jax
import jax.numpy as jnp


def per_sample(t: jax.Array, x: jax.Array) -> jax.Array:
    """t (a scalar, kept 0-d, or [B]) in x's dtype, shaped to broadcast against x ([B, ...])."""
    t = jnp.asarray(t, x.dtype)
    return t if t.ndim == 0 else t.reshape((-1,) + (1,) * (x.ndim - 1))
