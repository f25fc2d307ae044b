"""The device mesh and shardings, and the multi-process helpers: one program for any topology.

The mesh has two axes over all devices of all processes: 'data' and 'fsdp'. The batch is split
over both (every device sees distinct examples); parameters and optimizer state are sharded
over 'fsdp' and replicated over 'data' (config.parallel.fsdp = 1: pure data parallelism).
Both axes are `AxisType.Auto`: the network code is sharding-agnostic and XLA inserts the
all-gathers and reduce-scatters, where Explicit axes (jax.make_mesh's default) would make
every op that meets a sharded parameter demand an explicit output sharding.
"""

import glob
import importlib.util
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from consistency_jax.errors import ConfigError

PyTree = Any
DATA, FSDP = "data", "fsdp"


class MeshError(ConfigError):
    """A mesh or batch size that the devices at hand cannot take; names the config key to change."""


def make_mesh(cfg: ml_collections.ConfigDict) -> Mesh:
    """The ('data', 'fsdp') mesh over every device; `cfg` is config.parallel."""
    n = jax.device_count()
    fsdp = n if cfg.fsdp == -1 else cfg.fsdp
    if fsdp < 1 or n % fsdp:
        raise MeshError(
            f"config.parallel.fsdp={cfg.fsdp} does not divide the {n} devices; set it to a "
            f"divisor of {n} (1: data parallel only, -1: shard over all devices)."
        )
    return jax.make_mesh((n // fsdp, fsdp), (DATA, FSDP), axis_types=(AxisType.Auto,) * 2)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, stacked: bool = False) -> NamedSharding:
    """The batch axis split over every device of the mesh: the leading axis, or with `stacked`
    the second (the leading one indexing the steps of one dispatch)."""
    return NamedSharding(mesh, P(None, (DATA, FSDP)) if stacked else P((DATA, FSDP)))


def check_batch_size(key: str, batch_size: int, mesh: Mesh) -> None:
    """Raise MeshError, naming config.`key`, unless `batch_size` splits evenly over the devices."""
    if batch_size % mesh.size:
        raise MeshError(
            f"config.{key}={batch_size} is not divisible by the {mesh.size} devices of the mesh "
            f"({jax.process_count()} process(es)); set it to a multiple of {mesh.size}."
        )


def leaf_spec(shape: tuple[int, ...], fsdp: int, min_size: int) -> P:
    """Shard the largest dimension divisible by `fsdp` over 'fsdp'; replicate smaller leaves."""
    dims = [i for i, size in enumerate(shape) if size % fsdp == 0]
    if fsdp == 1 or math.prod(shape) < min_size or not dims:
        return P()
    axis = max(dims, key=lambda i: shape[i])  # the first of equally large ones
    return P(*(FSDP if i == axis else None for i in range(len(shape))))


def tree_shardings(tree: PyTree, mesh: Mesh, min_size: int) -> PyTree:
    """NamedShardings for every leaf of `tree` (arrays or ShapeDtypeStructs) on `mesh`."""
    fsdp = mesh.shape[FSDP]
    return jax.tree.map(lambda x: NamedSharding(mesh, leaf_spec(x.shape, fsdp, min_size)), tree)


def with_shardings(abstract: PyTree, shardings: PyTree) -> PyTree:
    """ShapeDtypeStructs of `abstract` carrying `shardings`: targets to restore or init onto."""
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, stacked: bool = False) -> dict[str, jax.Array]:
    """One global batch (`stacked`: several, on a leading axis) from every process's local share,
    split over the devices."""
    sharding = batch_sharding(mesh, stacked)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def gathered(fn: Callable[..., jax.Array]) -> Callable[..., np.ndarray]:
    """`fn` with its (possibly multi-process) output gathered into a host array on every process."""
    return lambda *args: multihost_utils.process_allgather(fn(*args), tiled=True)


def sharded_sampler(sampler: Callable[..., jax.Array], mesh: Mesh) -> Callable[..., np.ndarray]:
    """`sampler` jitted with its batch split over the mesh's devices, gathered on every process."""
    return gathered(jax.jit(sampler, out_shardings=batch_sharding(mesh)))


def is_main_process() -> bool:
    """Process 0 alone logs, and writes metrics, samples and the config."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """A barrier across processes (nothing with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


# Environments that start one task per host, and how many tasks they started.
_TASK_COUNTS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def distributed_args(
    coordinator: str | None, num_processes: int | None, process_id: int | None
) -> dict | None:
    """Arguments for jax.distributed.initialize, or None for a single-process run.

    Explicit values (flags or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID) win;
    otherwise SLURM or Open MPI with several tasks, and Cloud TPU VMs (libtpu and TPU chips
    present; recommended there even on one host), are left to jax's auto-detection.
    """
    if num_processes is not None:
        if num_processes == 1:
            return None
        if coordinator is None or process_id is None:
            raise MeshError(
                f"num_processes={num_processes} also needs --coordinator=HOST:PORT (of process "
                "0) and --process_id (0 .. num_processes - 1) on every process."
            )
        return {"coordinator_address": coordinator, "num_processes": num_processes, "process_id": process_id}
    if any(int(os.environ.get(var, "1")) > 1 for var in _TASK_COUNTS):
        return {}
    if importlib.util.find_spec("libtpu") and glob.glob("/dev/accel*") + glob.glob("/dev/vfio/[0-9]*"):
        return {}
    return None
