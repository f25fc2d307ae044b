"""Read a PyTorch `state_dict` file (`torch.save`) into NumPy arrays, without importing torch.

Both formats `torch.load` reads are supported (torch/serialization.py):
- the zip format (torch >= 1.6): `<archive>/data.pkl` pickles the object, each storage is the raw
  little-endian bytes of the record `<archive>/data/<key>`;
- the legacy format (e.g. torchvision's `vgg16-397923af.pth`, pytorch-fid's Inception, the lpips
  heads): five pickles in a row (magic number, protocol version, system info, the object, the
  storage keys), then per storage an int64 element count and its raw bytes.
The pickle names storages by persistent id ('storage', storage class, key, location, numel[, view])
and rebuilds tensors with `torch._utils._rebuild_tensor[_v2]`; only those globals are allowed.
"""

import collections
import dataclasses
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import IO, Any

import ml_dtypes
import numpy as np

_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
_LEGACY_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


@dataclasses.dataclass
class _Storage:
    """A storage whose bytes may arrive after the pickle (legacy format)."""

    dtype: np.dtype
    numel: int
    array: np.ndarray | None = None


@dataclasses.dataclass
class _StorageView:
    root: _Storage
    offset: int
    numel: int

    @property
    def array(self) -> np.ndarray:
        return self.root.array[self.offset : self.offset + self.numel]


@dataclasses.dataclass
class PendingTensor:
    storage: _Storage | _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        flat = self.storage.array
        if not self.size:
            return np.array(flat[self.offset])
        strides = tuple(s * flat.itemsize for s in self.stride)
        view = np.lib.stride_tricks.as_strided(flat[self.offset :], self.size, strides)
        return np.array(view)


def rebuild_tensor(storage, storage_offset, size, stride, *unused) -> PendingTensor:
    return PendingTensor(storage, storage_offset, tuple(size), tuple(stride))


def rebuild_parameter(data, *unused):
    return data


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    **{(module, name): name for module in ("torch", "torch.cuda") for name in _STORAGE_DTYPES},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only the globals of `allowed` ((module, name) -> object) and
    refuses any other, naming it; `what` names the kind of file in that message."""

    def __init__(
        self,
        file: IO[bytes],
        persistent_load: Callable[[tuple], Any],
        allowed: dict[tuple[str, str], Any] = _ALLOWED_GLOBALS,
        what: str = "a state_dict file",
    ):
        super().__init__(file, encoding="latin1")  # legacy files may hold Python 2 strings
        self._persistent_load = persistent_load
        self._allowed, self._what = allowed, what

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in {self._what}")
        return self._allowed[(module, name)]

    def persistent_load(self, pid: tuple) -> Any:
        return self._persistent_load(pid)


def _as_str(value: str | bytes) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _storage_loader(storages: dict[str, _Storage]) -> Callable[[tuple], _Storage | _StorageView]:
    """The `persistent_load` of both formats: one `_Storage` per key, views where asked."""

    def persistent_load(pid: tuple) -> _Storage | _StorageView:
        if _as_str(pid[0]) != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid[0]!r}")
        storage_type, key, numel = pid[1], _as_str(pid[2]), pid[4]
        storage = storages.setdefault(key, _Storage(np.dtype(_STORAGE_DTYPES[storage_type]), numel))
        view = pid[5] if len(pid) > 5 else None
        if view is not None:
            _, offset, view_numel = view
            return _StorageView(storage, offset, view_numel)
        return storage

    return persistent_load


def _materialize(obj: Any) -> Any:
    if isinstance(obj, PendingTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _load_zip(file: IO[bytes]) -> Any:
    with zipfile.ZipFile(file) as archive:
        names = archive.namelist()
        pickle_name = next(n for n in names if n.endswith("data.pkl"))
        prefix = pickle_name[: -len("data.pkl")]
        byteorder_name = prefix + "byteorder"
        if byteorder_name in names and archive.read(byteorder_name) != b"little":
            raise ValueError("big-endian torch checkpoints are not supported")
        storages: dict[str, _Storage] = {}
        with archive.open(pickle_name) as f:
            result = RestrictedUnpickler(f, _storage_loader(storages)).load()
        for key, storage in storages.items():
            data = archive.read(f"{prefix}data/{key}")
            storage.array = np.frombuffer(data, storage.dtype, count=storage.numel)
    return result


def load_legacy(file: IO[bytes]) -> Any:
    """The object of a legacy-format `torch.save` file, its storages filled, tensors pending."""
    if pickle.load(file) != _LEGACY_MAGIC_NUMBER:
        raise ValueError("not a PyTorch checkpoint (wrong magic number)")
    if pickle.load(file) != _LEGACY_PROTOCOL_VERSION:
        raise ValueError("unsupported legacy PyTorch checkpoint protocol version")
    if not pickle.load(file, encoding="latin1").get("little_endian", True):
        raise ValueError("big-endian torch checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    result = RestrictedUnpickler(file, _storage_loader(storages)).load()
    for key in pickle.load(file, encoding="latin1"):
        storage = storages[_as_str(key)]
        (numel,) = struct.unpack("<q", file.read(8))
        data = file.read(numel * storage.dtype.itemsize)
        storage.array = np.frombuffer(data, storage.dtype, count=numel)
    return result


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The `state_dict` saved by `torch.save` at `path`, as NumPy arrays, without torch."""
    with open(path, "rb") as f:
        is_zip = zipfile.is_zipfile(f)
        f.seek(0)
        result = _load_zip(f) if is_zip else load_legacy(f)
    return dict(_materialize(result))


def _nested_set(tree: dict, path: list[str], value: np.ndarray) -> None:
    for name in path[:-1]:
        tree = tree.setdefault(name, {})
    tree[path[-1]] = value


def flax_variables(state_dict: dict[str, np.ndarray]) -> dict[str, dict]:
    """Flax variables {'params', 'batch_stats'} from a torch state_dict whose dotted module paths
    equal the Flax module names: conv OIHW -> HWIO, linear (out, in) -> (in, out), batch norm
    weight/bias/running_mean/running_var -> scale/bias/mean/var."""
    variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for key, value in state_dict.items():
        *module, name = key.split(".")
        if name == "num_batches_tracked":
            continue
        if name in ("running_mean", "running_var"):
            _nested_set(variables["batch_stats"], module + [name.removeprefix("running_")], value)
        elif name == "bias":
            _nested_set(variables["params"], module + ["bias"], value)
        elif name == "weight" and value.ndim == 4:
            _nested_set(variables["params"], module + ["kernel"], value.transpose(2, 3, 1, 0))
        elif name == "weight" and value.ndim == 2:
            _nested_set(variables["params"], module + ["kernel"], value.T)
        elif name == "weight" and value.ndim == 1:
            _nested_set(variables["params"], module + ["scale"], value)
        else:
            raise ValueError(f"no Flax counterpart for the torch tensor {key} {value.shape}")
    return {k: v for k, v in variables.items() if v}
