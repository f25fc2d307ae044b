"""NVlabs/edm network pickles read without torch: a persistence-style pickle of a small DDPM++,
NCSN++ and ADM, written here with torch, gives our network the same outputs as its own parameters
(benchmarks/edm_pickle_parity.py checks the names against EDM's real modules)."""

import collections
import math
import pickle
import subprocess
import sys
import types

import jax
import numpy as np
import pytest

from consistency_jax.config import schema
from consistency_jax.data import DataInfo
from consistency_jax.jobs import convert
from consistency_jax.jobs.teacher import load_teacher
from consistency_jax.networks import build_network
from consistency_jax.networks.pretrained import edm_pickle

torch = pytest.importorskip("torch")

RES, LABELS = 8, 10
ARCH = dict(model_channels=16, channel_mult=(1, 2), channel_mult_emb=2, num_blocks=1, attn_resolutions=(4,))
SONG = {
    "ddpmpp": dict(embedding_type="positional", channel_mult_noise=1, resample_filter=[1, 1],
                   encoder_type="standard", decoder_type="standard"),
    "ncsnpp": dict(embedding_type="fourier", channel_mult_noise=2, resample_filter=[1, 3, 3, 1],
                   encoder_type="residual", decoder_type="standard"),
}


def _reconstruct_persistent_obj(meta):  # what EDM's pickles name; never called here
    raise AssertionError("the reader must not call EDM's reconstructor")


_persistence = types.ModuleType("torch_utils.persistence")
_persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
sys.modules.setdefault("torch_utils", types.ModuleType("torch_utils"))
sys.modules["torch_utils.persistence"] = _persistence


class Persistent:
    """Pickles as EDM's persistent classes do: _reconstruct_persistent_obj(meta)."""

    def __init__(self, class_name: str, state: dict):
        self.class_name, self.state = class_name, state

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src="raise RuntimeError('exec')",
                    class_name=self.class_name, state=self.state)
        return _reconstruct_persistent_obj, (meta,)


def _module_state(tensors: dict, children: dict) -> dict:
    buffer = lambda n: n == "resample_filter"
    params = collections.OrderedDict(
        (n, torch.nn.Parameter(torch.tensor(v), requires_grad=False)) for n, v in tensors.items() if not buffer(n)
    )
    buffers = collections.OrderedDict((n, torch.tensor(v)) for n, v in tensors.items() if buffer(n))
    return dict(training=False, _parameters=params, _buffers=buffers, _modules=collections.OrderedDict(children))


def _tree(names: dict) -> dict:
    root: dict = {}
    for name, value in names.items():
        node = root
        for part in name.split(".")[:-1]:
            node = node.setdefault(part, {})
        node[name.split(".")[-1]] = value
    return root


def _module(name: str, node: dict) -> object:
    tensors = {k: v for k, v in node.items() if isinstance(v, np.ndarray)}
    children = {k: _module(k, v) for k, v in node.items() if isinstance(v, dict)}
    if name in ("enc", "dec"):  # real torch containers, as EDM's SongUNet holds them
        container = torch.nn.ModuleDict()
        container._modules = collections.OrderedDict(children)
        return container
    return Persistent(name, _module_state(tensors, children))


def edm_tensors(params) -> dict:
    """Our parameters in EDM's names and layouts (the inverse of edm_pickle's mapping)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [p.key for p in path]
        module, leaf = edm_pickle.edm_module_name(keys[:-1]), np.asarray(leaf)
        if keys[-1] == "embedding":
            out[f"{module}.bias"] = leaf[-1]
            out[f"{module}.weight"] = ((leaf[:-1] - leaf[-1]) / math.sqrt(leaf.shape[0] - 1)).T
        elif keys[-1] == "kernel":
            out[f"{module}.weight"] = leaf.transpose(3, 2, 0, 1) if leaf.ndim == 4 else leaf.T
        else:
            out[f"{module}.{ {'scale': 'weight'}.get(keys[-1], keys[-1])}"] = leaf
    return out


def write_pickle(path, tensors: dict, model_class: str, kwargs: dict, precond: str = "EDMPrecond") -> None:
    model = _module(model_class, _tree(tensors))
    model.state["_init_kwargs"] = dict(img_resolution=RES, in_channels=3, out_channels=3, label_dim=LABELS, **kwargs)
    net = Persistent(precond, dict(
        _modules=collections.OrderedDict(model=model), img_resolution=RES, img_channels=3, label_dim=LABELS,
        use_fp16=False, sigma_min=0, sigma_max=float("inf"), sigma_data=np.float64(0.5),
    ))
    snapshot = dict(ema=net, loss_fn=Persistent("EDMLoss", {"P_mean": -1.2}), augment_pipe=None,
                    dataset_kwargs={"resolution": RES})
    with open(path, "wb") as f:
        pickle.dump(snapshot, f)


def network_config(name: str):
    c = schema.get_config()
    c.network.name, c.network.dropout = name, 0.0
    c.network.unet.update(ARCH)
    return c.network


def param_shapes(model):
    x = np.zeros((1, RES, RES, 3), np.float32)
    init = lambda: model.init(jax.random.key(1), x, np.zeros(1, np.float32), np.zeros(1, np.int32))
    return jax.eval_shape(init)["params"]


def random_params(model):
    """Every parameter drawn at random (zero-initialised layers too), without running the model."""
    rng = np.random.default_rng(2)
    return jax.tree.map(lambda s: 0.1 * rng.normal(size=s.shape).astype(np.float32), param_shapes(model))


def kwargs_of(name: str) -> dict:
    kw = {k: list(v) if isinstance(v, tuple) else v for k, v in ARCH.items()}
    return {**kw, "dropout": 0.0, "augment_dim": 9, **SONG.get(name, {})}


def outputs(model, *trees):
    """The network's outputs at each parameter tree (labels 0, 3, 9 and the null label)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, RES, RES, 3)).astype(np.float32)
    c_noise = np.array([-1.0, 0.0, 0.5, 2.0], np.float32)
    apply = jax.jit(lambda p: model.apply({"params": p}, x, c_noise, np.array([0, 3, 9, LABELS])))
    return [np.asarray(apply(p)) for p in trees]


@pytest.mark.parametrize("name", ["ddpmpp", "ncsnpp", "adm"])
def test_a_pickled_network_gives_the_outputs_of_its_parameters(tmp_path, name):
    model = build_network(network_config(name), LABELS)
    params = random_params(model)
    tensors = edm_tensors(params)
    tensors["map_augment.weight"] = np.ones((9, 4), np.float32)  # dropped: EDM samples without it
    if name != "adm":
        tensors["enc.4x4_down.conv0.resample_filter"] = np.ones((1, 1, 2, 2), np.float32)
    write_pickle(tmp_path / "net.pkl", tensors, "DhariwalUNet" if name == "adm" else "SongUNet", kwargs_of(name))
    net = edm_pickle.load_edm_pickle(str(tmp_path / "net.pkl"))
    assert edm_pickle.network_settings(net)["name"] == name
    imported = edm_pickle.flax_params(net, param_shapes(model))
    ours, direct = outputs(model, imported, params)
    np.testing.assert_allclose(ours, direct, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def ddpmpp_tensors():
    return edm_tensors(random_params(build_network(network_config("ddpmpp"), LABELS)))


def _import(path) -> None:
    net = edm_pickle.load_edm_pickle(str(path))
    edm_pickle.flax_params(net, param_shapes(build_network(network_config("ddpmpp"), LABELS)))


def test_an_unknown_or_misshaped_tensor_is_refused_by_name(tmp_path, ddpmpp_tensors):
    write_pickle(tmp_path / "a.pkl", {**ddpmpp_tensors, "enc.8x8_block0.extra.weight": np.ones(3, np.float32)},
                 "SongUNet", kwargs_of("ddpmpp"))
    with pytest.raises(edm_pickle.EDMPickleError, match=r"enc\.8x8_block0\.extra\.weight"):
        _import(tmp_path / "a.pkl")
    bad = {**ddpmpp_tensors, "map_layer0.bias": np.ones(5, np.float32)}
    write_pickle(tmp_path / "b.pkl", bad, "SongUNet", kwargs_of("ddpmpp"))
    with pytest.raises(edm_pickle.EDMPickleError, match=r"map_layer0/bias has shape \(5,\)"):
        _import(tmp_path / "b.pkl")
    missing = {k: v for k, v in ddpmpp_tensors.items() if k != "map_layer1.weight"}
    write_pickle(tmp_path / "c.pkl", missing, "SongUNet", kwargs_of("ddpmpp"))
    with pytest.raises(edm_pickle.EDMPickleError, match=r"lacks the tensor 'map_layer1\.weight'"):
        _import(tmp_path / "c.pkl")


def test_other_preconds_and_foreign_globals_are_refused(tmp_path, ddpmpp_tensors):
    write_pickle(tmp_path / "vp.pkl", ddpmpp_tensors, "SongUNet", kwargs_of("ddpmpp"), precond="VPPrecond")
    with pytest.raises(edm_pickle.EDMPickleError, match="holds a VPPrecond; only EDMPrecond"):
        edm_pickle.load_edm_pickle(str(tmp_path / "vp.pkl"))
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"ema": subprocess.Popen}, f)
    with pytest.raises(edm_pickle.EDMPickleError, match=r"subprocess\.Popen is not allowed"):
        edm_pickle.load_edm_pickle(str(tmp_path / "evil.pkl"))


def test_the_reader_imports_no_torch(tmp_path, ddpmpp_tensors):
    write_pickle(tmp_path / "net.pkl", ddpmpp_tensors, "SongUNet", kwargs_of("ddpmpp"))
    code = (
        "import sys\nfrom consistency_jax.networks.pretrained import edm_pickle\n"
        f"net = edm_pickle.load_edm_pickle({str(tmp_path / 'net.pkl')!r})\n"
        "assert net.tensors['map_layer0.weight'].shape == (32, 16)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow  # an orbax save and restore: 45-110 s on two shared cores
def test_convert_writes_a_run_the_teacher_loader_accepts(tmp_path, ddpmpp_tensors):
    write_pickle(tmp_path / "net.pkl", ddpmpp_tensors, "SongUNet", kwargs_of("ddpmpp"))
    config = schema.get_config()
    config.data.name = "cifar10"
    student = convert.convert(str(tmp_path / "net.pkl"), config, str(tmp_path / "run"))
    student.objective.name, student.objective.teacher_workdir = "cd", str(tmp_path / "run")
    info = DataInfo(shape=(RES, RES, 3), num_classes=LABELS, num_examples=1)
    teacher = load_teacher(student, info)
    assert teacher.config.network.name == "ddpmpp" and teacher.config.data.conditional
    for name, value in edm_tensors(jax.device_get(teacher.params)).items():
        np.testing.assert_allclose(value, ddpmpp_tensors[name], rtol=1e-6, atol=1e-7, err_msg=name)


def test_convert_refuses_a_used_workdir_a_missing_file_and_a_foreign_class(tmp_path, ddpmpp_tensors, capsys):
    config = "--config=configs/edm_cifar10_uncond_vp.py"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    assert convert.main([str(tmp_path / "net.pkl"), f"--out={tmp_path / 'run'}", config]) == 2
    assert convert.main([str(tmp_path / "none.pkl"), f"--out={tmp_path / 'new'}", config]) == 2
    write_pickle(tmp_path / "ve.pkl", ddpmpp_tensors, "SongUNet", kwargs_of("ddpmpp"), precond="VEPrecond")
    assert convert.main([str(tmp_path / "ve.pkl"), f"--out={tmp_path / 'new'}", config]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert [e.split(":")[0] for e in errors] == ["error"] * 3, errors
    assert "already holds a run" in errors[0] and "No file" in errors[1] and "VEPrecond" in errors[2]
    assert not (tmp_path / "new").exists()
