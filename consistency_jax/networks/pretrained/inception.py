"""The FID Inception-v3 (TF graph inception-2015-12-05) in Flax, as mseitzer/pytorch-fid builds it.

Module names follow torchvision's Inception3 with pytorch-fid's FIDInceptionA/C/E_1/E_2 blocks
(src/pytorch_fid/inception.py: `fid_inception_v3`), so pytorch-fid's weight file
`pt_inception-2015-12-05-6726825d.pth` loads key for key. Outputs: pool3 (2048) and the 1008-way
logits of the graph's softmax layer (`fc`, bias included).

Inputs are resized to 299x299 as pytorch-fid does (torch bilinear, half-pixel centres, no
antialias), so features match pytorch-fid; the TF graph resizes on its own (TTUR, tfgan), which
moves FID slightly (REFERENCE.md section 9: the protocols are not interchangeable).
"""

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from consistency_jax.networks.pretrained.resize import resize_bilinear
from consistency_jax.networks.pretrained.torch_checkpoint import flax_variables, load_torch_state_dict
from consistency_jax.networks.pretrained.weights import WeightsFile, fetch_weights

FID_INCEPTION_WEIGHTS = WeightsFile(
    description="the FID Inception-v3 weights of pytorch-fid",
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth",
    sha256="6726825d",
)
INCEPTION_SIZE = 299

_Padding = tuple[int, int]


class BasicConv2d(nn.Module):
    """Conv (no bias) -> batch norm (eps 1e-3, running statistics) -> ReLU."""

    features: int
    kernel_size: tuple[int, int]
    strides: int = 1
    padding: _Padding = (0, 0)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = [(p, p) for p in self.padding]
        x = nn.Conv(
            self.features, self.kernel_size, self.strides, pad, use_bias=False, name="conv"
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _conv(features: int, kernel: int | tuple[int, int], name: str, **kwargs) -> BasicConv2d:
    kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
    return BasicConv2d(features, kernel, name=name, **kwargs)


def _tf_avg_pool(x: jax.Array) -> jax.Array:
    # pytorch-fid's FID patch: TF's 3x3 average pool leaves the zero padding out of the mean
    return nn.avg_pool(x, (3, 3), (1, 1), ((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x: jax.Array, strides: int = 2, padding: int = 0) -> jax.Array:
    return nn.max_pool(x, (3, 3), (strides, strides), ((padding, padding), (padding, padding)))


class FIDInceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = _conv(64, 1, "branch1x1")(x)
        b5 = _conv(48, 1, "branch5x5_1")(x)
        b5 = _conv(64, 5, "branch5x5_2", padding=(2, 2))(b5)
        b3 = _conv(64, 1, "branch3x3dbl_1")(x)
        b3 = _conv(96, 3, "branch3x3dbl_2", padding=(1, 1))(b3)
        b3 = _conv(96, 3, "branch3x3dbl_3", padding=(1, 1))(b3)
        bp = _conv(self.pool_features, 1, "branch_pool")(_tf_avg_pool(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = _conv(384, 3, "branch3x3", strides=2)(x)
        bd = _conv(64, 1, "branch3x3dbl_1")(x)
        bd = _conv(96, 3, "branch3x3dbl_2", padding=(1, 1))(bd)
        bd = _conv(96, 3, "branch3x3dbl_3", strides=2)(bd)
        return jnp.concatenate([b3, bd, _max_pool(x)], axis=-1)


class FIDInceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c7 = self.channels_7x7
        b1 = _conv(192, 1, "branch1x1")(x)
        b7 = _conv(c7, 1, "branch7x7_1")(x)
        b7 = _conv(c7, (1, 7), "branch7x7_2", padding=(0, 3))(b7)
        b7 = _conv(192, (7, 1), "branch7x7_3", padding=(3, 0))(b7)
        bd = _conv(c7, 1, "branch7x7dbl_1")(x)
        bd = _conv(c7, (7, 1), "branch7x7dbl_2", padding=(3, 0))(bd)
        bd = _conv(c7, (1, 7), "branch7x7dbl_3", padding=(0, 3))(bd)
        bd = _conv(c7, (7, 1), "branch7x7dbl_4", padding=(3, 0))(bd)
        bd = _conv(192, (1, 7), "branch7x7dbl_5", padding=(0, 3))(bd)
        bp = _conv(192, 1, "branch_pool")(_tf_avg_pool(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = _conv(192, 1, "branch3x3_1")(x)
        b3 = _conv(320, 3, "branch3x3_2", strides=2)(b3)
        b7 = _conv(192, 1, "branch7x7x3_1")(x)
        b7 = _conv(192, (1, 7), "branch7x7x3_2", padding=(0, 3))(b7)
        b7 = _conv(192, (7, 1), "branch7x7x3_3", padding=(3, 0))(b7)
        b7 = _conv(192, 3, "branch7x7x3_4", strides=2)(b7)
        return jnp.concatenate([b3, b7, _max_pool(x)], axis=-1)


class FIDInceptionE(nn.Module):
    """FIDInceptionE_1 (average pool) or, with `max_pool`, FIDInceptionE_2: the TF graph's last
    block max-pools its pool branch (pytorch-fid: "likely an error" in the graph, kept for FID)."""

    max_pool: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b1 = _conv(320, 1, "branch1x1")(x)
        b3 = _conv(384, 1, "branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                _conv(384, (1, 3), "branch3x3_2a", padding=(0, 1))(b3),
                _conv(384, (3, 1), "branch3x3_2b", padding=(1, 0))(b3),
            ],
            axis=-1,
        )
        bd = _conv(448, 1, "branch3x3dbl_1")(x)
        bd = _conv(384, 3, "branch3x3dbl_2", padding=(1, 1))(bd)
        bd = jnp.concatenate(
            [
                _conv(384, (1, 3), "branch3x3dbl_3a", padding=(0, 1))(bd),
                _conv(384, (3, 1), "branch3x3dbl_3b", padding=(1, 0))(bd),
            ],
            axis=-1,
        )
        pooled = _max_pool(x, strides=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        bp = _conv(192, 1, "branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
    """uint8 NHWC RGB images of any size -> (pool3 features [N, 2048], logits [N, 1008])."""

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = images.astype(jnp.float32) / 255.0
        # pytorch-fid InceptionV3.forward: bilinear resize of [0, 1] images, then scale to [-1, 1]
        x = resize_bilinear(x, (INCEPTION_SIZE, INCEPTION_SIZE))
        x = 2 * x - 1
        x = _conv(32, 3, "Conv2d_1a_3x3", strides=2)(x)
        x = _conv(32, 3, "Conv2d_2a_3x3")(x)
        x = _conv(64, 3, "Conv2d_2b_3x3", padding=(1, 1))(x)
        x = _max_pool(x)
        x = _conv(80, 1, "Conv2d_3b_1x1")(x)
        x = _conv(192, 3, "Conv2d_4a_3x3")(x)
        x = _max_pool(x)
        x = FIDInceptionA(32, name="Mixed_5b")(x)
        x = FIDInceptionA(64, name="Mixed_5c")(x)
        x = FIDInceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        x = FIDInceptionC(128, name="Mixed_6b")(x)
        x = FIDInceptionC(160, name="Mixed_6c")(x)
        x = FIDInceptionC(160, name="Mixed_6d")(x)
        x = FIDInceptionC(192, name="Mixed_6e")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = FIDInceptionE(max_pool=False, name="Mixed_7b")(x)
        x = FIDInceptionE(max_pool=True, name="Mixed_7c")(x)
        pool3 = jnp.mean(x, axis=(1, 2))
        logits = nn.Dense(1008, name="fc")(pool3)
        return pool3, logits


@jax.jit
def fid_inception(variables: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(pool3 [N, 2048], logits [N, 1008]) of uint8 NHWC `images` under `variables`."""
    with jax.default_matmul_precision("highest"):  # full float32 convolutions on GPU/TPU too
        return FIDInceptionV3().apply(variables, images)


def fid_inception_variables(path: str | None = None) -> dict:
    """The FID Inception's Flax variables from pytorch-fid's weight file (`load_fid_inception`)."""
    return flax_variables(load_torch_state_dict(fetch_weights(FID_INCEPTION_WEIGHTS, path)))


def load_fid_inception(
    path: str | None = None,
) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """A jitted fn: uint8 NHWC images -> (pool3 features [N, 2048] float32, logits [N, 1008]).

    Weights: `path`, else `pt_inception-2015-12-05-6726825d.pth` in the cache folder
    ($CONSISTENCY_JAX_CACHE or ~/.cache/consistency_jax), downloaded there once from pytorch-fid's
    release if absent; without network, a `WeightsUnavailableError` says where to put the file.
    """
    return functools.partial(fid_inception, fid_inception_variables(path))
