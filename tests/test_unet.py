"""SongUNet (DDPM++ / NCSN++): EDM parameter counts, resampling, init, interface, dropout."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from consistency_jax.config.schema import get_config
from consistency_jax.networks import build_network
from consistency_jax.networks.unet import Conv2d, SongUNet, downsample, upsample

# Exact counts of EDM's SongUNet at the CIFAR-10 sizes (32x32x3, unconditional), from the shapes
# of NVlabs/edm training/networks.py; NCSN++'s Fourier `freqs` is a buffer there, excluded here
# (with its 128 entries: 56,395,651, JCM's Flax count).
EDM_PARAMS = {"ddpmpp": 55_732_739, "ncsnpp": 56_395_523}
PUBLISHED = {"ddpmpp": 55.73e6, "ncsnpp": 56.40e6}
ARCHS = {
    "ddpmpp": {},
    "ncsnpp": {
        "embedding_type": "fourier",
        "channel_mult_noise": 2,
        "resample_filter": (1, 3, 3, 1),
        "encoder_type": "residual",
    },
}
# Compile at XLA's lowest backend optimisation: the small U-Nets compile several times faster.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _config(name: str):
    cfg = get_config()
    cfg.network.name = name
    return cfg


def _trainable_count(params) -> int:
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return sum(v.size for p, v in leaves if "freqs" not in jax.tree_util.keystr(p))


def _compile(fn, *args):
    """`fn` jitted and compiled for speed, for arguments shaped like `args`."""
    return jax.jit(fn).lower(*args).compile(compiler_options=FAST_COMPILE)


def _small(arch: str, num_classes: int = 0) -> SongUNet:
    return SongUNet(
        model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,), dropout=0.5,
        num_classes=num_classes, **ARCHS[arch],
    )


def _inputs(shape: tuple[int, ...], labelled: bool) -> tuple[jax.Array, ...]:
    """x, c_noise and labels (zeros, or None when not `labelled`) for a batch of `shape`."""
    x = jax.random.normal(jax.random.key(1), shape)
    c_noise = jnp.linspace(-1.0, 2.0, shape[0])
    return x, c_noise, jnp.zeros(shape[:1], jnp.int32) if labelled else None


@functools.cache
def _random_params(model: SongUNet, shape: tuple[int, ...], labelled: bool):
    """Parameters drawn at O(1) gain everywhere (EDM's init zeroes each block's last conv)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), *_inputs(shape, labelled))["params"]
    rng = np.random.default_rng(0)

    def draw(path, s: jax.ShapeDtypeStruct) -> jax.Array:
        std = 1 / np.sqrt(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 0.1
        mean = 1.0 if jax.tree_util.keystr(path).endswith("['scale']") else 0.0
        return jnp.asarray(rng.normal(mean, std, s.shape), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.cache
def _forward(model: SongUNet, shape: tuple[int, ...], labelled: bool, train: bool = False):
    """Compiled (x, c_noise, labels, dropout key) -> F at `_random_params`."""
    params = _random_params(model, shape, labelled)

    def fn(params, x, c_noise, labels, key):
        rngs = {"dropout": key} if train else {}
        return model.apply({"params": params}, x, c_noise, labels, train=train, rngs=rngs)

    compiled = _compile(fn, params, *_inputs(shape, labelled), jax.random.key(0))
    return functools.partial(compiled, params)


@pytest.mark.parametrize("name", ["ddpmpp", "ncsnpp"])
def test_param_count_matches_edm(name):
    model = build_network(_config(name).network)
    x, c = jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,))
    shapes = jax.eval_shape(lambda k: model.init(k, x, c), jax.random.key(0))["params"]
    n = _trainable_count(shapes)
    assert n == EDM_PARAMS[name]
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 1e-3
    assert "qkv" in shapes["enc_16x16_block0"] and "qkv" in shapes["dec_8x8_in0"]
    assert "qkv" not in shapes["enc_32x32_block0"] and "qkv" not in shapes["enc_8x8_block0"]
    assert ("enc_16x16_aux_residual" in shapes) == (name == "ncsnpp")


def test_builders_follow_config():
    cfg = _config("ncsnpp").network
    cfg.fourier_scale, cfg.dropout = 0.02, 0.2
    model = build_network(cfg, num_classes=10)
    assert (model.embedding_type, model.fourier_scale, model.dropout) == ("fourier", 0.02, 0.2)
    assert (model.num_classes, model.channel_mult_noise) == (10, 2)
    assert (model.resample_filter, model.encoder_type) == ((1, 3, 3, 1), "residual")
    cfg = _config("ddpmpp").network
    assert build_network(cfg).embedding_type == "positional"
    cfg.embedding_type = "fourier"
    assert build_network(cfg).embedding_type == "fourier"


def _conv_transpose_ref(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """PyTorch conv_transpose2d(stride 2, padding (k-1)//2) of one channel, by scattering."""
    k, pad = len(f), (len(f) - 1) // 2
    w = np.outer(f, f) / f.sum() ** 2 * 4
    h = x.shape[0]
    full = np.zeros((2 * (h - 1) + k,) * 2)
    for i in range(h):
        for j in range(h):
            full[2 * i : 2 * i + k, 2 * j : 2 * j + k] += x[i, j] * w
    return full[pad : pad + 2 * h, pad : pad + 2 * h]


def _conv_down_ref(x: np.ndarray, f: np.ndarray, pad: int | None = None) -> np.ndarray:
    """PyTorch conv2d(stride 2, padding (k-1)//2 or `pad`) of one channel with the filter."""
    k, pad = len(f), (len(f) - 1) // 2 if pad is None else pad
    w = np.outer(f, f) / f.sum() ** 2
    xp = np.pad(x, pad)
    n = (xp.shape[0] - k) // 2 + 1
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = np.sum(xp[2 * i : 2 * i + k, 2 * j : 2 * j + k] * w)
    return out


@pytest.mark.parametrize("taps", [(1, 1), (1, 3, 3, 1)])
def test_resampling_matches_edm_conv(taps):
    x = np.random.default_rng(0).normal(size=(6, 6)).astype(np.float32)
    f = np.asarray(taps, np.float64)
    up = upsample(jnp.asarray(x)[None, :, :, None], taps)[0, :, :, 0]
    down = downsample(jnp.asarray(x)[None, :, :, None], taps)[0, :, :, 0]
    np.testing.assert_allclose(up, _conv_transpose_ref(x, f), atol=1e-5)
    np.testing.assert_allclose(down, _conv_down_ref(x, f), atol=1e-5)


def test_fused_down_conv_matches_edm():
    """EDM Conv2d fused_resample down: conv at full resolution padded by k // 2 + f_pad, then
    the filter with stride 2 and no padding."""
    taps, x = (1, 3, 3, 1), np.random.default_rng(1).normal(size=(1, 8, 8, 2)).astype(np.float32)
    layer = Conv2d(3, 3, down=True, fused=True, resample_filter=taps)
    params = layer.init(jax.random.key(0), x)
    full = jax.lax.conv_general_dilated(
        x, params["params"]["kernel"], (1, 1), [(2, 2)] * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    expected = np.stack(
        [_conv_down_ref(np.asarray(full[0, :, :, c]), np.asarray(taps, np.float64), 0) for c in range(3)],
        axis=-1,
    )
    np.testing.assert_allclose(layer.apply(params, x)[0], expected, atol=1e-5)


def test_init_follows_edm():
    model = SongUNet(
        model_channels=8, channel_mult=(1,), num_blocks=1, attn_resolutions=(), num_classes=3,
        **ARCHS["ncsnpp"],
    )
    key = jax.random.key(0, impl="rbg")  # compiles several times faster than threefry
    args = (key, *_inputs((1, 4, 4, 1), labelled=True))
    params = _compile(model.init, *args)(*args)["params"]
    assert float(jnp.abs(params["dec_4x4_aux_conv"]["kernel"]).max()) < 1e-5  # EDM init_zero
    assert float(jnp.abs(params["dec_4x4_in0"]["proj"]["kernel"]).max()) < 1e-5
    assert float(jnp.abs(params["enc_4x4_block0"]["conv1"]["kernel"]).max()) < 1e-5
    assert float(jnp.abs(params["enc_4x4_block0"]["conv0"]["kernel"]).max()) > 0.05
    np.testing.assert_array_equal(params["map_label"]["embedding"][-1], 0.0)  # EDM: bias only
    assert float(jnp.abs(params["map_label"]["embedding"][:-1]).max()) > 0.1
    leaves = jax.tree_util.tree_leaves_with_path(params)
    assert all(not np.any(v) for p, v in leaves if jax.tree_util.keystr(p).endswith("['bias']"))


@pytest.mark.parametrize("arch", ["ddpmpp", "ncsnpp"])
@pytest.mark.parametrize("shape", [(2, 16, 16, 3), (2, 8, 8, 1)])
def test_output_shape_and_dtype(arch, shape):
    x, c_noise, _ = _inputs(shape, labelled=False)
    out = _forward(_small(arch), shape, False)(x, c_noise, None, jax.random.key(0))
    assert out.shape == shape and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))


def test_samples_are_independent_of_the_batch():
    shape = (2, 8, 8, 1)
    forward = _forward(_small("ncsnpp"), shape, False)
    x, c_noise, _ = _inputs(shape, labelled=False)
    out = forward(x, c_noise, None, jax.random.key(0))
    changed = forward(x.at[1].set(0.0), c_noise.at[1].set(5.0), None, jax.random.key(0))
    np.testing.assert_allclose(changed[0], out[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(changed[1], out[1], rtol=1e-2)


def test_class_conditioning():
    model, shape = _small("ncsnpp", num_classes=3), (3, 8, 8, 1)
    x, c_noise, _ = _inputs(shape, labelled=True)
    x, c_noise = jnp.broadcast_to(x[:1], shape), jnp.full((3,), 0.5)
    out = _forward(model, shape, True)(x, c_noise, jnp.array([0, 1, 3]), jax.random.key(0))
    assert not np.allclose(out[0], out[1], rtol=1e-2)
    assert not np.allclose(out[0], out[2], rtol=1e-2)
    params = _random_params(model, shape, True)
    assert params["map_label"]["embedding"].shape == (4, 32)
    args = ({"params": params}, x, c_noise)
    unlabelled = _compile(model.apply, *args)(*args)
    np.testing.assert_allclose(unlabelled, out[2:].repeat(3, axis=0), rtol=1e-5, atol=1e-6)


def test_dropout_uses_the_dropout_rng_only_in_training():
    model, shape = _small("ddpmpp"), (2, 8, 8, 1)
    x, c_noise, _ = _inputs(shape, labelled=False)
    train = functools.partial(_forward(model, shape, False, train=True), x, c_noise, None)
    evaluate = functools.partial(_forward(model, shape, False), x, c_noise, None)
    np.testing.assert_array_equal(train(jax.random.key(0)), train(jax.random.key(0)))
    assert not np.allclose(train(jax.random.key(0)), train(jax.random.key(1)), rtol=1e-2)
    np.testing.assert_array_equal(evaluate(jax.random.key(0)), evaluate(jax.random.key(1)))
    assert not np.allclose(evaluate(jax.random.key(0)), train(jax.random.key(0)), rtol=1e-2)


def test_rejects_what_it_does_not_build():
    x, c_noise, _ = _inputs((1, 5, 5, 1), labelled=False)
    with pytest.raises(ValueError, match="divisible by 2"):
        jax.eval_shape(_small("ddpmpp").init, jax.random.key(0), x, c_noise)
    with pytest.raises(ValueError, match="encoder_type"):
        model = SongUNet(encoder_type="skip")
        jax.eval_shape(model.init, jax.random.key(0), x[:, :4, :4], c_noise)
