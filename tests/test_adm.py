"""ADM (EDM's DhariwalUNet): EDM's parameter count at ImageNet-64, layout, init, labels, config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import imagenet64_cd, imagenet64_edm
from consistency_jax.config import checks
from consistency_jax.config.schema import get_config
from consistency_jax.errors import ConfigError
from consistency_jax.networks import build_network
from consistency_jax.networks.adm import DhariwalUNet

# Counted by instantiating NVlabs/edm training/networks.py DhariwalUNet(img_resolution=64,
# in_channels=3, out_channels=3, label_dim=1000 or 0) with its defaults (EDM's ImageNet-64 ADM).
EDM_ADM_PARAMS = {1000: 295_899_267, 0: 295_131_267}
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _shapes(model, size: int = 64, labelled: bool = True):
    x, c, labels = jnp.zeros((1, size, size, 3)), jnp.zeros((1,)), jnp.zeros((1,), jnp.int32)
    return jax.eval_shape(lambda k: model.init(k, x, c, labels if labelled else None), jax.random.key(0))["params"]


def _count(params) -> int:
    return sum(v.size for v in jax.tree_util.tree_leaves(params))


@pytest.mark.parametrize("num_classes", [1000, 0])
def test_param_count_matches_edm_at_imagenet64(num_classes):
    shapes = _shapes(DhariwalUNet(num_classes=num_classes), labelled=bool(num_classes))
    assert _count(shapes) == EDM_ADM_PARAMS[num_classes]
    # attention at 32, 16, 8 in every encoder and decoder block there, none at 64
    assert all("qkv" in shapes[f"enc_{r}x{r}_block0"] and "qkv" in shapes[f"dec_{r}x{r}_block3"] for r in (32, 16, 8))
    assert "qkv" not in shapes["enc_64x64_block0"] and "qkv" not in shapes["dec_64x64_block3"]
    # a 1x1 skip conv only where the width changes: resampling blocks keep theirs parameter-free
    assert "skip" not in shapes["enc_32x32_down"] and "skip" in shapes["enc_32x32_block0"]
    assert shapes["enc_8x8_block0"]["affine"]["kernel"].shape == (768, 2 * 768)  # scale and shift


def test_the_imagenet64_configs_build_edms_network():
    for module in (imagenet64_edm, imagenet64_cd):
        config = module.get_config()
        assert config.data.conditional and config.network.name == "adm"
        assert _count(_shapes(build_network(config.network, num_classes=1000))) == EDM_ADM_PARAMS[1000]
        checks.check_network_fits_data(config, (64, 64, 3))


def _small(num_classes: int = 3) -> DhariwalUNet:
    return DhariwalUNet(model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,),
                        dropout=0.0, num_classes=num_classes)


def _init(model, x, c, labels):
    key = jax.random.key(0, impl="rbg")  # compiles several times faster than threefry
    return jax.jit(model.init).lower(key, x, c, labels).compile(FAST_COMPILE)(key, x, c, labels)["params"]


def test_init_follows_edm():
    """DhariwalUNet's `init`: kaiming_uniform weights and biases times sqrt(1/3), i.e.
    U(+-1/sqrt(fan_in)); `init_zero` layers zero; the label map N(0, 1)."""
    model, x = _small(num_classes=50), jnp.zeros((1, 8, 8, 3))
    params = _init(model, x, jnp.zeros((1,)), jnp.zeros((1,), jnp.int32))
    block = params["enc_4x4_block0"]
    for w, fan_in in ((block["conv0"]["kernel"], 9 * 16), (block["conv0"]["bias"], 9 * 16),
                      (params["map_layer1"]["kernel"], 64), (params["map_layer1"]["bias"], 64)):
        bound = 1 / np.sqrt(fan_in)
        assert float(jnp.abs(w).max()) <= bound and float(jnp.abs(w).max()) > 0.9 * bound
    for zero in (block["conv1"], block["proj"], params["out_conv"]):
        assert not np.any(zero["kernel"]) and not np.any(zero["bias"])
    assert abs(float(jnp.std(params["map_label"]["kernel"])) - 1.0) < 0.05  # 50 x 64 draws
    assert "bias" not in params["map_label"]


def test_labels_enter_and_the_null_label_is_none():
    """The null label (num_classes, also labels=None) is EDM's dropped label: the zero one-hot."""
    model = _small()
    x = jnp.broadcast_to(jax.random.normal(jax.random.key(1), (1, 8, 8, 3)), (4, 8, 8, 3))
    c = jnp.full((4,), 0.3)
    params = _init(model, x, c, jnp.zeros((4,), jnp.int32))
    # the zero-initialised output layers would hide every path: give them weights
    params = jax.tree.map(lambda p: p + 0.05 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), params)
    apply = lambda *args: jax.jit(model.apply).lower(*args).compile(FAST_COMPILE)(*args)
    out = apply({"params": params}, x, c, jnp.array([0, 1, 2, 3]))
    unlabelled = apply({"params": params}, x, c)
    assert not np.allclose(out[0], out[1], rtol=1e-2) and not np.allclose(out[1], out[2], rtol=1e-2)
    np.testing.assert_allclose(unlabelled, jnp.broadcast_to(out[3], out.shape), rtol=1e-5, atol=1e-6)


def test_adm_takes_only_its_own_embedding():
    config = get_config()
    config.network.name, config.network.embedding_type = "adm", "fourier"
    with pytest.raises(ConfigError, match="adm network's noise embedding is positional"):
        checks.check_network_fits_data(config, (8, 8, 1))
