"""openai/consistency_models_cifar10 ("jcm") checkpoints read without torch: a small NCSN++
evaluated here in score_sde's own formulation (its layer names, separate q/k/v, FIR resampling
before the strided conv) from a jcm-layout tree must give our NCSN++ the same outputs after the
import, and its denoiser and consistency function jcm's closed forms."""

import importlib
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import serialization

from consistency_jax.config import checks, schema
from consistency_jax.core.parametrization import Parametrization, precondition
from consistency_jax.jobs import convert
from consistency_jax.networks import build_network, network_fn
from consistency_jax.networks.pretrained import jcm_msgpack

RES, NF, MULT, BLOCKS, ATTN = 8, 8, (1, 2), 1, (4,)  # 8x8 RGB, two resolutions, attention at 4x4
FIR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0  # score_sde fir_kernel [1, 3, 3, 1], normalised


# --- score_sde's NCSN++ (progressive_input 'residual', BigGAN blocks), written out in numpy ------


class Scope:
    """A module scope with Flax's automatic names (`Kind_k`, counted per kind in creation order);
    with `rng`, creates each parameter it is asked for (a random init of this test's own)."""

    def __init__(self, tree: dict, rng: np.random.Generator | None = None):
        self.tree, self.rng, self.counts = tree, rng, {}

    def child(self, kind: str) -> "Scope":
        k = self.counts.get(kind, 0)
        self.counts[kind] = k + 1
        if self.rng is not None:
            self.tree.setdefault(f"{kind}_{k}", {})
        return Scope(self.tree[f"{kind}_{k}"], self.rng)

    def param(self, name: str, shape: tuple[int, ...], scale: float, mean: float = 0.0) -> np.ndarray:
        if self.rng is not None and name not in self.tree:
            self.tree[name] = (mean + scale * self.rng.standard_normal(shape)).astype(np.float32)
        return np.asarray(self.tree[name], np.float64)


def windows(x, k, stride, pad):
    """[B, Ho, Wo, k*k, C]: the k x k patches of x zero-padded by pad = (before, after), every stride-th."""
    xp = np.pad(x, ((0, 0), pad, pad, (0, 0)))
    ho, wo = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    return np.stack(
        [
            xp[:, u : u + stride * (ho - 1) + 1 : stride, v : v + stride * (wo - 1) + 1 : stride]
            for u in range(k)
            for v in range(k)
        ],
        axis=3,
    )


def correlate(x, w, stride=1, pad=None):
    """Cross-correlation with an HWIO kernel, 'SAME' padding unless given (Flax nn.Conv, lax.conv)."""
    k = w.shape[0]
    pad = pad or (k // 2, k // 2)
    return np.einsum("bhwkc,kco->bhwo", windows(x, k, stride, pad), w.reshape(k * k, *w.shape[2:]))


def fir(x, k2, stride, pad):
    """Each channel correlated with the 2-D filter k2 (score_sde upfirdn_2d without up-sampling)."""
    return np.einsum("bhwkc,k->bhwc", windows(x, k2.shape[0], stride, pad), k2.reshape(-1))


def upsample_fir(x):
    """score_sde upsample_2d: a zero after each pixel, pad (2, 1), filter with 4 FIR."""
    z = np.zeros((x.shape[0], 2 * x.shape[1], 2 * x.shape[2], x.shape[3]))
    z[:, ::2, ::2] = x
    return fir(z, 4 * FIR, 1, (2, 1))


def downsample_fir(x):
    """score_sde downsample_2d: pad (1, 1), filter with FIR, keep every second output."""
    return fir(x, FIR, 2, (1, 1))


def swish(x):
    return x / (1 + np.exp(-x))


def dense(s: Scope, x, out):
    d = s.child("Dense")
    return x @ d.param("kernel", (x.shape[-1], out), x.shape[-1] ** -0.5) + d.param("bias", (out,), 0.1)


def conv(s: Scope, x, out, k=3):
    c = s.child("Conv")
    w = c.param("kernel", (k, k, x.shape[-1], out), (k * k * x.shape[-1]) ** -0.5)
    return correlate(x, w) + c.param("bias", (out,), 0.1)


def nin(s: Scope, x, out):
    n = s.child("NIN")
    w = n.param("W", (x.shape[-1], out), x.shape[-1] ** -0.5)
    return np.einsum("bhwc,cd->bhwd", x, w) + n.param("b", (out,), 0.1)


def group_norm(s: Scope, x):
    g, c = s.child("GroupNorm"), x.shape[-1]
    groups = min(c // 4, 32)
    y = x.reshape(*x.shape[:3], groups, c // groups)
    y = (y - y.mean((1, 2, 4), keepdims=True)) / np.sqrt(y.var((1, 2, 4), keepdims=True) + 1e-6)
    return y.reshape(x.shape) * g.param("scale", (c,), 0.1, 1.0) + g.param("bias", (c,), 0.1)


def resnet_biggan(s: Scope, x, temb, out=None, up=False, down=False):
    r = s.child("ResnetBlockBigGANpp")
    out = out or x.shape[-1]
    h = swish(group_norm(r, x))
    if up:
        h, x = upsample_fir(h), upsample_fir(x)
    if down:
        h, x = downsample_fir(h), downsample_fir(x)
    h = conv(r, h, out)
    h = h + dense(r, swish(temb), out)[:, None, None, :]
    h = conv(r, swish(group_norm(r, h)), out)  # dropout 0
    if x.shape[-1] != out or up or down:
        x = conv(r, x, out, k=1)
    return (x + h) / np.sqrt(2.0)


def attention(s: Scope, x):
    a, (b, hh, ww, c) = s.child("AttnBlockpp"), x.shape
    h = group_norm(a, x)
    q, k, v = nin(a, h, c), nin(a, h, c), nin(a, h, c)
    w = np.einsum("bhwc,bHWc->bhwHW", q, k).reshape(b, hh, ww, hh * ww) / np.sqrt(c)
    w = np.exp(w - w.max(-1, keepdims=True))
    w = (w / w.sum(-1, keepdims=True)).reshape(b, hh, ww, hh, ww)
    return (x + nin(a, np.einsum("bhwHW,bHWc->bhwc", w, v), c)) / np.sqrt(2.0)


def downsample_residual(s: Scope, x, out):
    """Downsample(with_conv, fir): FIR (pad 2) at full resolution, then the 3x3 conv with stride 2."""
    c = s.child("Downsample").child("Conv2d")
    w = c.param("weight", (3, 3, x.shape[-1], out), (9 * x.shape[-1]) ** -0.5)
    return correlate(fir(x, FIR, 1, (2, 2)), w, 2, (0, 0)) + c.param("bias", (out,), 0.1)


def ncsnpp(tree: dict, x, cond, rng=None):
    """score_sde NCSNpp(x, time_cond) with jcm's CIFAR-10 settings at this test's small sizes."""
    s, x, cond = Scope(tree, rng), np.asarray(x, np.float64), np.asarray(cond, np.float64)
    f = s.child("GaussianFourierProjection")
    proj = cond[:, None] * f.param("W", (NF,), 16.0)[None, :] * 2 * np.pi
    temb = np.concatenate([np.sin(proj), np.cos(proj)], axis=-1)
    temb = dense(s, swish(dense(s, temb, 4 * NF)), 4 * NF)
    pyramid, hs = x, [conv(s, x, NF)]
    for level, mult in enumerate(MULT):
        for _ in range(BLOCKS):
            h = resnet_biggan(s, hs[-1], temb, NF * mult)
            hs.append(attention(s, h) if h.shape[1] in ATTN else h)
        if level != len(MULT) - 1:
            h = resnet_biggan(s, hs[-1], temb, down=True)
            pyramid = (downsample_residual(s, pyramid, h.shape[-1]) + h) / np.sqrt(2.0)
            hs.append(pyramid)
    h = resnet_biggan(s, attention(s, resnet_biggan(s, hs[-1], temb)), temb)
    for level in reversed(range(len(MULT))):
        for _ in range(BLOCKS + 1):
            h = resnet_biggan(s, np.concatenate([h, hs.pop()], axis=-1), temb, NF * MULT[level])
        h = attention(s, h) if h.shape[1] in ATTN else h
        if level != 0:
            h = resnet_biggan(s, h, temb, up=True)
    assert not hs
    return conv(s, swish(group_norm(s, h)), x.shape[-1])


def random_tree(seed: int) -> dict:
    tree = {}
    ncsnpp(tree, np.zeros((1, RES, RES, 3)), np.zeros((1,)), np.random.default_rng(seed))
    return tree


def jcm_state(**trees) -> dict:
    """A jcm `State` as its checkpoints save it (jcm/models/utils.py), RAdam state and key elided."""
    fields = dict(step=800_000, lr=4e-4, ema_rate=0.9999, model_state={}, opt_state={})
    return fields | dict(rng_state=np.zeros(2, np.uint32)) | trees


def write(path, state: dict) -> str:
    path.write_bytes(serialization.to_bytes(state))
    return str(path)


# --- fixtures -----------------------------------------------------------------------------------


def small_config(objective: str = "cd"):
    c = schema.get_config()  # network.unet at its CIFAR-10 sizes: the import reads the file's
    c.data.name, c.data.image_size = "cifar10", RES
    c.network.name, c.network.unet.attn_resolutions = "ncsnpp", ATTN
    c.objective.name = objective
    return c


@pytest.fixture(scope="module")
def trees():
    return {"params": random_tree(1), "params_ema": random_tree(2)}


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory, trees):
    return write(tmp_path_factory.mktemp("jcm") / "checkpoint_80", jcm_state(**trees))


@pytest.fixture(scope="module")
def imported(checkpoint_file):
    """(config, shapes of our params, {tree: our params}, jitted F(params, x, c_noise)): the
    checkpoint's params_ema through the import job's steps, its params through the mapping alone."""
    params = {tree: jcm_msgpack.load_jcm_params(checkpoint_file, tree) for tree in jcm_msgpack.PARAM_TREES}
    config = convert.jcm_config(small_config(), params["params_ema"])
    ours = {"params_ema": convert.jcm_state(config, params["params_ema"]).ema_params}
    shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), ours["params_ema"])
    ours["params"] = jcm_msgpack.flax_params(params["params"], shapes, config.network.unet, RES)
    model = build_network(config.network)
    return config, shapes, ours, jax.jit(lambda p, x, c: network_fn(model, p)(x, c))


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, RES, RES, 3)).astype(np.float32)
    t = np.array([0.002, 0.5, 80.0], np.float32)
    return x, t


# --- tests --------------------------------------------------------------------------------------


def test_the_imported_network_computes_score_sdes_ncsnpp(imported, trees, inputs):
    config, _, params, apply = imported
    assert (config.network.unet.model_channels, config.network.unet.channel_mult) == (NF, MULT)
    assert (config.network.unet.num_blocks, config.network.unet.channel_mult_emb) == (BLOCKS, 4)
    x, t = inputs
    cond = 0.25 * np.log(t)
    for tree in jcm_msgpack.PARAM_TREES:  # each tree its own network: params and params_ema differ
        want = ncsnpp(trees[tree], x, cond)
        np.testing.assert_allclose(apply(params[tree], x, cond), want, rtol=1e-4, atol=1e-4, err_msg=tree)
        assert np.abs(want).mean() > 0.1  # the comparison is not of two near-zero outputs


def test_its_denoiser_and_consistency_function_are_jcms(imported, trees, inputs):
    """jcm/models/utils.py get_denoiser_fn and get_distiller_fn (sigma_d 0.5, t_min 0.002),
    written out: c_in x = x / sqrt(t^2 + sd^2), the network at ln(t) / 4, then the skips."""
    _, _, params, apply = imported
    x, t = inputs
    sd, eps = 0.5, 0.002
    tt = t[:, None, None, None].astype(np.float64)
    out = ncsnpp(trees["params_ema"], x / np.sqrt(tt**2 + sd**2), 0.25 * np.log(t))
    denoiser = x * sd**2 / (tt**2 + sd**2) + out * tt * sd / np.sqrt(tt**2 + sd**2)
    distiller = x * sd**2 / ((tt - eps) ** 2 + sd**2) + out * (tt - eps) * sd / np.sqrt(tt**2 + sd**2)
    net = lambda y, c: apply(params["params_ema"], y, c)
    for kind, want in (("edm", denoiser), ("consistency", distiller)):
        got = precondition(net, Parametrization(kind, convert.JCM_SIGMA_DATA, convert.JCM_SIGMA_MIN), x, t)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=kind)
    np.testing.assert_allclose(distiller[0], x[0], atol=1e-6)  # the boundary f(x, eps) = x


def test_an_unknown_or_misshaped_tensor_or_another_network_is_refused(tmp_path, imported, trees):
    config, shapes, _, _ = imported

    def to_flax(tree):
        tree = jcm_msgpack.load_jcm_params(write(tmp_path / "c", jcm_state(params_ema=tree)))
        return jcm_msgpack.flax_params(tree, shapes, config.network.unet, RES)

    extra = jax.tree.map(np.copy, trees["params_ema"])
    extra["ResnetBlockBigGANpp_3"]["Conv_9"] = {"kernel": np.zeros((1, 1, 16, 16), np.float32)}
    with pytest.raises(jcm_msgpack.JCMCheckpointError, match=r"no place for: ResnetBlockBigGANpp_3/Conv_9/kernel\."):
        to_flax(extra)
    bad = jax.tree.map(np.copy, trees["params_ema"])
    bad["AttnBlockpp_1"]["NIN_2"]["W"] = np.zeros((16, 8), np.float32)
    with pytest.raises(
        jcm_msgpack.JCMCheckpointError, match=r"'AttnBlockpp_1/NIN_2/W' has shape \(16, 8\); .* \(16, 16\)"
    ):
        to_flax(bad)
    missing = jax.tree.map(np.copy, trees["params_ema"])
    del missing["ResnetBlockBigGANpp_2"]["Conv_2"]  # the down block's skip
    with pytest.raises(
        jcm_msgpack.JCMCheckpointError, match=r"lacks the tensor 'ResnetBlockBigGANpp_2/Conv_2/(bias|kernel)'"
    ):
        to_flax(missing)
    joint = {"NCSNpp_0": trees["params_ema"], "NCSNpp_1": trees["params_ema"]}  # jcm JointNCSNpp
    with pytest.raises(jcm_msgpack.JCMCheckpointError, match=r"network of \['NCSNpp'\]; only score_sde's NCSN\+\+"):
        to_flax(joint)
    wrong = small_config()
    wrong.network.unet.attn_resolutions = (8, 4)
    with pytest.raises(jcm_msgpack.JCMCheckpointError, match=r"has 3 AttnBlockpp blocks; .* makes 5"):
        convert.jcm_config(wrong, trees["params_ema"])


@pytest.mark.parametrize("name", ["jcm_cifar10_cd_lpips", "jcm_cifar10_ct_lpips", "jcm_cifar10_edm"])
def test_the_import_configs_sample_the_checkpoints_network(name):
    """--mode=sample|eval builds the network from --config: it must be jcm's CIFAR-10 NCSN++
    (configs/cifar10_ve_cd.py: nf 128, ch_mult (2, 2, 2), 4 blocks, attention at 16, Fourier
    scale 16), wrapped with jcm's sigma_d and eps, and the config must pass validation."""
    c = importlib.import_module(f"configs.{name}").get_config()
    checks.validate(c)
    u = c.network.unet
    assert (
        c.network.name == "ncsnpp" and c.network.embedding_type in ("auto", "fourier") and c.network.fourier_scale == 16
    )
    assert (u.model_channels, tuple(u.channel_mult), u.num_blocks, tuple(u.attn_resolutions)) == (
        128,
        (2, 2, 2),
        4,
        (16,),
    )
    assert u.channel_mult_emb == 4 and c.data.image_size in (0, 32) and not c.data.conditional
    assert (c.model.sigma_data, c.model.sigma_min, c.model.sigma_max) == (0.5, 0.002, 80.0)


def test_the_reader_imports_no_torch(checkpoint_file):
    code = (
        "import sys\nfrom consistency_jax.networks.pretrained import jcm_msgpack\n"
        f"p = jcm_msgpack.load_jcm_params({checkpoint_file!r})\n"
        f"assert p['Conv_0']['kernel'].shape == (3, 3, 3, {NF})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_convert_refuses_bad_files_and_configs_with_exit_2(tmp_path, checkpoint_file, trees, capsys):
    (tmp_path / "garbage").write_bytes(b"GIF89a not a checkpoint")
    (tmp_path / "cut").write_bytes(open(checkpoint_file, "rb").read()[:5000])
    online_only = write(tmp_path / "online", jcm_state(params=trees["params"]))
    (tmp_path / "ict.py").write_text(
        "from configs.jcm_cifar10_cd_lpips import get_config as base\n"
        "def get_config():\n    c = base()\n    c.objective.name = 'ict'\n    return c\n"
    )
    config = "--config=configs/jcm_cifar10_cd_lpips.py"
    runs = [
        [str(tmp_path / "garbage"), config],
        [str(tmp_path / "cut"), config],
        [online_only, config],
        [checkpoint_file, f"--config={tmp_path / 'ict.py'}"],
    ]
    for args in runs:
        assert convert.main([*args, f"--out={tmp_path / 'new'}"]) == 2, args
    err = capsys.readouterr().err
    errors = err.splitlines()
    assert [e.split(":")[0] for e in errors] == ["error"] * 4 and "Traceback" not in err, err
    assert "neither an NVlabs/edm network pickle nor" in errors[0]
    assert "is not a flax msgpack checkpoint" in errors[1]
    assert "has no 'params_ema'" in errors[2] and "params" in errors[2]
    assert "objective.name='ict'" in errors[3]
    assert not (tmp_path / "new").exists()


@pytest.mark.slow  # an orbax save and restore: about a minute on two shared cores
def test_convert_writes_a_run_whose_sampling_params_are_the_checkpoints(tmp_path, checkpoint_file, trees, inputs):
    from consistency_jax.data import DataInfo
    from consistency_jax.evaluation.run import restore_ema_params

    config = convert.convert(checkpoint_file, small_config(), str(tmp_path / "run"), "params")
    model = build_network(config.network)
    info = DataInfo(shape=(RES, RES, 3), num_classes=10, num_examples=1)
    params, step = restore_ema_params(config, str(tmp_path / "run"), model, info)
    x, t = inputs
    assert step == 0 and config.objective.name == "cd"
    np.testing.assert_allclose(
        network_fn(model, params)(x, 0.25 * np.log(t)),
        ncsnpp(trees["params"], x, 0.25 * np.log(t)),
        rtol=1e-4,
        atol=1e-4,
    )
