"""Bilinear resizing exactly as torch's F.interpolate(mode='bilinear', align_corners=False)."""

import jax
import jax.numpy as jnp
import numpy as np


def bilinear_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] interpolation weights of torch's bilinear resize with
    align_corners=False and no antialiasing (ATen UpSample.h: area_pixel_compute_source_index)."""
    # torch: float32 scale, source index fused-multiply-added (one rounding) to float32
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0).astype(np.float32)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = src - lo.astype(np.float32)
    weights = np.zeros((out_size, in_size), np.float32)
    np.add.at(weights, (np.arange(out_size), lo), 1 - frac)
    np.add.at(weights, (np.arange(out_size), hi), frac)
    return weights


def resize_bilinear(images: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Resize NHWC `images` to `size` (H, W) as torch's bilinear interpolate does. Equal to
    jax.image.resize(..., 'bilinear') when upsampling; unlike it, never antialiases."""
    height, width = images.shape[1:3]
    if (height, width) == tuple(size):
        return images
    rows = bilinear_resize_matrix(height, size[0])
    cols = bilinear_resize_matrix(width, size[1])
    hp = jax.lax.Precision.HIGHEST
    images = jnp.einsum("oh,nhwc->nowc", rows, images, precision=hp)
    return jnp.einsum("pw,nowc->nopc", cols, images, precision=hp)
