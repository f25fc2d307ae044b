"""LPIPS v0.1 on the VGG16 trunk (arXiv 1801.03924; richzhang/PerceptualSimilarity lpips.py).

The trunk is torchvision's vgg16().features (3x3 convs with bias, ReLU, 2x2 max-pool) tapped at
relu1_2, relu2_2, relu3_3, relu4_3, relu5_3; its weights come from torchvision's
`vgg16-397923af.pth` and the 1x1 heads from lpips' `weights/v0.1/vgg.pth`, both read without torch.
"""

import functools
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from consistency_jax.networks.pretrained.resize import resize_bilinear
from consistency_jax.networks.pretrained.torch_checkpoint import flax_variables, load_torch_state_dict
from consistency_jax.networks.pretrained.weights import WeightsFile, fetch_weights

VGG16_WEIGHTS = WeightsFile(
    description="torchvision's VGG16 ImageNet weights, the LPIPS trunk",
    filename="vgg16-397923af.pth",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    sha256="397923af",
)
LPIPS_VGG_LIN_WEIGHTS = WeightsFile(
    description="the LPIPS v0.1 VGG16 heads, weights/v0.1/vgg.pth of the lpips package",
    filename="lpips_v0.1_vgg.pth",
    url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/vgg.pth",
    sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
)
LPIPS_SIZE = 224
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# lpips ScalingLayer: (x - shift) / scale maps [-1, 1] to ImageNet-normalised inputs
LPIPS_SHIFT = np.array([-0.030, -0.088, -0.188], np.float32)
LPIPS_SCALE = np.array([0.458, 0.448, 0.450], np.float32)


class VGG16Features(nn.Module):
    """torchvision vgg16().features up to relu5_3 -> the five taps; conv i is named `features_i`."""

    @nn.compact
    def __call__(self, x: jax.Array) -> list[jax.Array]:
        taps, index = [], 0
        for block, widths in enumerate(VGG16_BLOCKS):
            if block:
                x = nn.max_pool(x, (2, 2), (2, 2))
                index += 1
            for width in widths:
                x = nn.relu(
                    nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), name=f"features_{index}")(x)
                )
                index += 2  # the conv and its ReLU
            taps.append(x)
        return taps


def unit_normalize(features: jax.Array, eps: float = 1e-10) -> jax.Array:
    """f / (||f||_channels + eps) (lpips normalize_tensor), with a finite gradient where f = 0."""
    squared = jnp.sum(features**2, axis=-1, keepdims=True)
    safe = jnp.where(squared > 0, squared, 1.0)
    return features / (jnp.where(squared > 0, jnp.sqrt(safe), 0.0) + eps)


class LPIPS(nn.Module):
    """(x, y) NHWC RGB in [-1, 1] -> LPIPS distance [N]. Inputs are first resized bilinearly to
    224x224, as the consistency-models JAX code does for 32x32 images."""

    @nn.compact
    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        both = jnp.concatenate([x, y]).astype(jnp.float32)
        both = resize_bilinear(both, (LPIPS_SIZE, LPIPS_SIZE))
        taps = VGG16Features(name="vgg")((both - LPIPS_SHIFT) / LPIPS_SCALE)
        distance = 0.0
        for k, tap in enumerate(taps):
            fx, fy = jnp.split(unit_normalize(tap), 2)
            weighted = nn.Conv(1, (1, 1), use_bias=False, name=f"lin{k}")((fx - fy) ** 2)
            distance = distance + jnp.mean(weighted, axis=(1, 2, 3))  # spatial average
        return distance


@jax.jit
def lpips_distance(variables: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    """LPIPS [N] of NHWC (x, y) in [-1, 1] under `variables` (`lpips_variables`). Inside a jitted
    train step, pass the variables as an argument: closed over, they are baked into the program."""
    with jax.default_matmul_precision("highest"):  # full float32 convolutions on GPU/TPU too
        return LPIPS().apply(variables, x, y)


def _installed_lpips_heads() -> Path | None:
    """lpips' own copy of the v0.1 VGG heads, if the lpips package is installed (not imported)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "weights" / "v0.1" / "vgg.pth"
    return path if path.is_file() else None


def lpips_variables(
    vgg_path: str | os.PathLike | None = None, lin_path: str | os.PathLike | None = None
) -> dict:
    """The Flax variables of `LPIPS` from the torchvision VGG16 and lpips v0.1 head files."""
    vgg = load_torch_state_dict(fetch_weights(VGG16_WEIGHTS, vgg_path))
    lin = load_torch_state_dict(
        fetch_weights(LPIPS_VGG_LIN_WEIGHTS, lin_path or _installed_lpips_heads())
    )
    state = {
        f"vgg.{k.replace('features.', 'features_')}": v
        for k, v in vgg.items()
        if k.startswith("features.")
    }
    state |= {k.replace(".model.1", ""): v for k, v in lin.items()}  # lin{k}.model.1.weight
    return flax_variables(state)


def load_lpips(
    vgg_path: str | os.PathLike | None = None, lin_path: str | os.PathLike | None = None
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """A jitted, differentiable fn: (x, y) NHWC in [-1, 1] -> LPIPS distance [N].

    Weights: the given paths, else `vgg16-397923af.pth` and `lpips_v0.1_vgg.pth` in the cache
    folder ($CONSISTENCY_JAX_CACHE or ~/.cache/consistency_jax), downloaded once if absent (the
    heads are also taken from an installed lpips package); without network, a
    `WeightsUnavailableError` says which file to put where.
    """
    return functools.partial(lpips_distance, lpips_variables(vgg_path, lin_path))
