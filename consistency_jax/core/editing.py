"""Zero-shot editing with a consistency function (CM paper Alg. 4, Sec. 6 and App. D).

Alg. 4 keeps the known part of a reference y after every step: with an orthogonal A and a mask
Omega of the coefficients that are known, x <- A^T[Omega (A y) + (1 - Omega) (A x)], which is
x + P(y - x) for the orthogonal projector P = A^T Omega A onto the known subspace. Each task is
such a replacement: a pixel mask (inpainting), the luma direction of RGB (colorization), block
means (super-resolution); stroke-guided generation (SDEdit) replaces nothing and starts at a
middle sigma from the strokes.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

ConsistencyFn = Callable[[jax.Array, jax.Array], jax.Array]  # f(x, sigma) -> x0_hat
Replace = Callable[[jax.Array, jax.Array], jax.Array]  # (y, x) -> x with y's known part put in

LUMA = (0.2989, 0.5870, 0.1140)  # RGB -> luma weights of CM's colorization (Rec. 601)


def projecting(project: Callable[[jax.Array], jax.Array]) -> Replace:
    """(y, x) -> x + P(y - x) for an orthogonal projector P onto the known subspace."""
    return lambda y, x: x + project(y - x)


def inpainting(mask: jax.Array) -> Replace:
    """The pixels where `mask` (0 or 1, broadcast to the images) is 1 are known: taken from y as
    they are (mask y + (1 - mask) x, exact where x + mask (y - x) would round)."""
    return lambda y, x: mask * y + (1 - mask) * x


def colorization(weights: Sequence[float] = LUMA) -> Replace:
    """P d = (d . v) v per pixel, v the unit luma direction: the grayscale image is known."""
    v = jnp.asarray(weights, jnp.float32) / np.linalg.norm(weights)
    return projecting(lambda d: (d @ v)[..., None] * v)


def block_mean(x: jax.Array, factor: int) -> jax.Array:
    """NHWC images -> the means of their factor x factor blocks, [N, H / factor, W / factor, C]."""
    n, h, w, c = x.shape
    return x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


def superresolution(factor: int) -> Replace:
    """P d = each block's mean spread over the block: the low-resolution image is known."""
    return projecting(lambda d: jnp.repeat(jnp.repeat(block_mean(d, factor), factor, axis=1), factor, axis=2))


def edit(
    f: ConsistencyFn,
    key: jax.Array,
    y: jax.Array,
    replace: Replace | None,
    sigmas: Sequence[float],
    sigma_min: float,
    clip: bool = False,
) -> jax.Array:
    """CM Alg. 4: x ~ N(y, sigmas[0]^2 I); for each sigma: x0 = f(x, sigma), the known part of y
    put back (`replace`), then re-noised to the next sigma, x = x0 + sqrt(sigma^2 - eps^2) z.

    The first noise is drawn from `key` itself and the i-th from fold_in(key, i), as in
    `sampling.multistep_sample`; `replace=None` keeps nothing (y only starts the chain: SDEdit).
    """
    x = y + sigmas[0] * jax.random.normal(key, y.shape)
    for i, sigma in enumerate(sigmas):
        if i:
            x = x + jnp.sqrt(sigma**2 - sigma_min**2) * jax.random.normal(jax.random.fold_in(key, i), y.shape)
        x = f(x, jnp.float32(sigma))
        x = jnp.clip(x, -1, 1) if clip else x
        x = replace(y, x) if replace is not None else x
    return x


def slerp(z0: jax.Array, z1: jax.Array, alpha: jax.Array) -> jax.Array:
    """Spherical interpolation of two noises per example, alpha in [0, 1] (CM Sec. 6)."""
    flat0, flat1 = z0.reshape(len(z0), -1), z1.reshape(len(z1), -1)
    cos = jnp.sum(flat0 * flat1, axis=1) / (jnp.linalg.norm(flat0, axis=1) * jnp.linalg.norm(flat1, axis=1))
    theta = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    shape = (-1,) + (1,) * (z0.ndim - 1)
    w0 = (jnp.sin((1 - alpha) * theta) / jnp.sin(theta)).reshape(shape)
    w1 = (jnp.sin(alpha * theta) / jnp.sin(theta)).reshape(shape)
    return w0 * z0 + w1 * z1
