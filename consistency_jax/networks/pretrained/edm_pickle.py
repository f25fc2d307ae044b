"""Read an NVlabs/edm network pickle (`edm-cifar10-32x32-uncond-vp.pkl`, ...) without torch, and
map its `EDMPrecond` network onto our DDPM++/NCSN++ (`SongUNet`) or ADM (`DhariwalUNet`) params.

A snapshot pickles `dict(ema=EDMPrecond, loss_fn, augment_pipe, dataset_kwargs)` (EDM
training/training_loop.py). Each EDM class pickles through `torch_utils.persistence` as
`_reconstruct_persistent_obj(meta)`, meta holding the class's module source, its name and the
object's `__dict__`; here that call returns the name and the state, and the source is never run.
Tensors arrive as `_rebuild_tensor_v2(storage, ...)` with each storage a legacy `torch.save` blob
(`torch.storage._load_from_bytes`), read by `torch_checkpoint.load_legacy`.
"""

import dataclasses
import io
import math
import pickle
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np

from consistency_jax.errors import ConfigError
from consistency_jax.networks.pretrained import torch_checkpoint


class EDMPickleError(ConfigError):
    """An EDM pickle that cannot be imported: another class, an unknown or mis-shaped tensor."""


@dataclasses.dataclass
class PickledObject:
    """A pickled torch module or EDM persistent object: its class name and its `__dict__`."""

    class_name: str
    state: dict = dataclasses.field(default_factory=dict)

    def __setstate__(self, state: dict) -> None:  # pickle's BUILD of a torch container
        self.state = state


def _reconstruct_persistent_obj(meta: dict) -> PickledObject:
    """EDM persistence's reconstructor, without `exec` of meta['module_src']."""
    if meta.get("type") != "class":
        raise pickle.UnpicklingError(f"an EDM persistent object of type {meta.get('type')!r}")
    return PickledObject(meta["class_name"], meta["state"] or {})


def _container(name: str) -> type:
    """A stand-in for a torch.nn container class (ModuleDict, ...), created by NEWOBJ."""
    new = lambda cls, *args: object.__new__(cls)
    return type(name, (PickledObject,), {"__new__": new, "class_name": name, "state": {}})


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """copyreg._reconstructor (protocols 0 and 1) for the stand-ins and dicts only."""
    if not (isinstance(cls, type) and issubclass(cls, (PickledObject, dict))):
        raise pickle.UnpicklingError(f"copyreg._reconstructor of {cls!r}")
    return cls.__new__(cls)


def _load_from_bytes(blob: bytes) -> Any:
    """torch.storage._load_from_bytes: a storage saved in torch.save's legacy format."""
    return torch_checkpoint.load_legacy(io.BytesIO(blob))


def _rebuild_tensor(*args: Any) -> np.ndarray:
    return torch_checkpoint.rebuild_tensor(*args).materialize()


_TORCH_CONTAINERS = ("ModuleDict", "ModuleList", "Sequential")
_NUMPY_SCALAR = np.float64(0).__reduce__()[0]  # numpy's `scalar`, whichever module holds it
_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch_checkpoint.rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch_checkpoint.rebuild_parameter,
    ("collections", "OrderedDict"): dict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("builtins", "object"): object,
    ("dnnlib.util", "EasyDict"): dict,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "scalar"): _NUMPY_SCALAR,
    ("numpy._core.multiarray", "scalar"): _NUMPY_SCALAR,
    **{("torch.nn.modules.container", n): _container(n) for n in _TORCH_CONTAINERS},
}


def is_pickle(head: bytes) -> bool:
    """Whether a file starting with `head` is a pickle of protocol 2 or later (EDM's snapshots)."""
    return len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5


def _unpickle(path: str) -> Any:
    with open(path, "rb") as f:
        unpickler = torch_checkpoint.RestrictedUnpickler(
            f, _refuse_persistent_id, _ALLOWED, "an EDM network pickle (only EDM's networks and "
            "torch tensors are read; nothing in the file is run)",
        )
        try:
            return unpickler.load()
        except pickle.UnpicklingError as e:
            raise EDMPickleError(f"{path}: {e}.") from None


def _refuse_persistent_id(pid: Any) -> None:
    raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")


def _tensors(module: PickledObject, prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
    """(dotted name, array) of every parameter and buffer under `module`, as torch's state_dict."""
    for group in ("_parameters", "_buffers"):
        for name, value in (module.state.get(group) or {}).items():
            if value is not None:
                yield prefix + name, value
    for name, child in (module.state.get("_modules") or {}).items():
        if child is not None:
            yield from _tensors(child, f"{prefix}{name}.")


@dataclasses.dataclass(frozen=True)
class EDMNetwork:
    """An EDM precond's network: its class names, init kwargs and tensors (EDM's names)."""

    precond: str  # 'EDMPrecond'
    sigma_data: float
    label_dim: int
    img_resolution: int
    img_channels: int
    model: str  # 'SongUNet' | 'DhariwalUNet'
    model_kwargs: dict  # the recorded init kwargs over EDM's defaults
    tensors: dict[str, np.ndarray]  # 'enc.32x32_conv.weight', ... (the `model.` prefix dropped)


# EDM training/networks.py: SongUNet and DhariwalUNet constructor defaults (kwargs not recorded).
_DEFAULTS = {
    "SongUNet": dict(
        model_channels=128, channel_mult=[1, 2, 2, 2], channel_mult_emb=4, num_blocks=4,
        attn_resolutions=[16], dropout=0.10, augment_dim=0, embedding_type="positional",
        channel_mult_noise=1, encoder_type="standard", decoder_type="standard", resample_filter=[1, 1],
    ),
    "DhariwalUNet": dict(
        model_channels=192, channel_mult=[1, 2, 3, 4], channel_mult_emb=4, num_blocks=3,
        attn_resolutions=[32, 16, 8], dropout=0.10, augment_dim=0,
    ),
}


def load_edm_pickle(path: str) -> EDMNetwork:
    """The `ema` network of an EDM snapshot pickle at `path`; EDMPickleError if it is not an
    `EDMPrecond` around a SongUNet or DhariwalUNet."""
    data = _unpickle(path)
    net = data.get("ema") if isinstance(data, dict) else None
    if not isinstance(net, PickledObject):
        raise EDMPickleError(f"{path} is not an EDM network snapshot (no 'ema' network in it).")
    if net.class_name != "EDMPrecond":
        raise EDMPickleError(
            f"{path} holds a {net.class_name}; only EDMPrecond networks can be imported (our "
            "teacher is EDM-preconditioned; VPPrecond, VEPrecond and iDDPMPrecond wrap the network "
            "in other scalings)."
        )
    model = (net.state.get("_modules") or {}).get("model")
    if not isinstance(model, PickledObject) or model.class_name not in _DEFAULTS:
        name = model.class_name if isinstance(model, PickledObject) else type(model).__name__
        raise EDMPickleError(f"{path}: EDMPrecond wraps a {name}; only {sorted(_DEFAULTS)} can be imported.")
    s = net.state
    return EDMNetwork(
        precond=net.class_name, sigma_data=float(s["sigma_data"]), label_dim=int(s["label_dim"]),
        img_resolution=int(s["img_resolution"]), img_channels=int(s["img_channels"]),
        model=model.class_name,
        model_kwargs={**_DEFAULTS[model.class_name], **(model.state.get("_init_kwargs") or {})},
        tensors=dict(_tensors(model)),
    )


# Our network name -> the SongUNet settings that make it (networks/__init__.py _ddpmpp, _ncsnpp).
_SONG_ARCHS = {
    "ddpmpp": dict(channel_mult_noise=1, resample_filter=[1, 1], encoder_type="standard", decoder_type="standard"),
    "ncsnpp": dict(
        channel_mult_noise=2, resample_filter=[1, 3, 3, 1], encoder_type="residual", decoder_type="standard"
    ),
}


def network_settings(net: EDMNetwork) -> dict:
    """config.network keys (name, dropout, embedding_type, unet.*) that build `net`."""
    k = net.model_kwargs
    if net.model == "DhariwalUNet":
        name, extra = "adm", {}
    else:
        arch = {key: list(k[key]) if isinstance(k[key], tuple) else k[key] for key in _SONG_ARCHS["ddpmpp"]}
        name = next((n for n, a in _SONG_ARCHS.items() if a == arch), None)
        if name is None:
            raise EDMPickleError(
                f"The pickle's SongUNet ({arch}) is neither DDPM++ nor NCSN++ as this project builds them."
            )
        extra = {"embedding_type": k["embedding_type"]}
    unet = {key: k[key] for key in ("model_channels", "channel_mult_emb", "num_blocks")}
    unet |= {key: tuple(k[key]) for key in ("channel_mult", "attn_resolutions")}
    return {"name": name, "dropout": float(k["dropout"]), **extra, "unet": unet}


def edm_module_name(keys: list[str]) -> str:
    """Our parameter path -> EDM's module path: enc_16x16_block0/conv0 -> enc.16x16_block0.conv0."""
    module = keys[0]
    if module.startswith(("enc_", "dec_")):
        side, rest = module.split("_", 1)
        module = f"{side}.{rest}"
    return ".".join([module, *keys[1:]])


def _take(tensors: dict[str, np.ndarray], used: set[str], name: str) -> np.ndarray:
    if name not in tensors:
        raise EDMPickleError(f"The pickle lacks the tensor {name!r} that this network needs.")
    used.add(name)
    return tensors[name]


def _flax_leaf(keys: list[str], tensors: dict[str, np.ndarray], used: set[str]) -> np.ndarray:
    """Our parameter at `keys` from EDM's tensors: OIHW -> HWIO, (out, in) -> (in, out),
    GroupNorm weight -> scale; SongUNet's label map as embedding rows."""
    module, leaf = edm_module_name(keys[:-1]), keys[-1]
    if leaf == "embedding":  # SongUNet: map_label(sqrt(L) one_hot) = sqrt(L) W[:, i] + b; null: b
        w, b = _take(tensors, used, f"{module}.weight"), _take(tensors, used, f"{module}.bias")
        return np.concatenate([math.sqrt(w.shape[1]) * w.T + b, b[None]]).astype(np.float32)
    if leaf == "freqs":  # FourierEmbedding's buffer
        return _take(tensors, used, f"{module}.freqs")
    w = _take(tensors, used, f"{module}.{'bias' if leaf == 'bias' else 'weight'}")
    if leaf == "kernel" and w.ndim in (2, 4):
        w = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T
    return w


# EDM tensors with no counterpart here: the resampling filters (buffers, fixed by the
# architecture), and the augmentation label map (EDM samples with augment_labels=None, so it adds 0).
_DROPPED_SUFFIXES = (".resample_filter",)
_DROPPED = ("map_augment.weight",)


def flax_params(net: EDMNetwork, shapes: Any) -> Any:
    """Our parameter tree (shaped as `shapes`, e.g. jax.eval_shape of model.init's params) from
    the pickle's tensors; EDMPickleError naming any tensor that is missing, unknown or mis-shaped."""
    used: set[str] = set()

    def leaf(path, shape) -> np.ndarray:
        keys = [p.key for p in path]
        value = np.asarray(_flax_leaf(keys, net.tensors, used), np.float32)
        if value.shape != tuple(shape.shape):
            raise EDMPickleError(
                f"The pickle's tensor for {'/'.join(keys)} has shape {value.shape}; this network "
                f"needs {tuple(shape.shape)}."
            )
        return value

    params = jax.tree_util.tree_map_with_path(leaf, shapes)
    unknown = [
        n for n in net.tensors
        if n not in used and not n.endswith(_DROPPED_SUFFIXES) and n not in _DROPPED
    ]
    if unknown:
        raise EDMPickleError(
            f"The pickle holds tensors this {net.model} has no place for: {', '.join(sorted(unknown))}."
        )
    return params
