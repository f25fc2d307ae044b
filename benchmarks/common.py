"""What every benchmark shares: presets, device facts, compile/cost/memory of a step, timing, output."""

import ast
import dataclasses
import datetime
import functools
import importlib
import json
import os
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import flags

from consistency_jax.data import DataInfo, data_info, num_labels
from consistency_jax.networks import build_network
from consistency_jax.training.state import init_params

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_BATCH = {"digits": 64, "cifar10": 8, "toy": 256}  # digits: its teacher and CD batch; toy: its batch
BATCH_HELP = "batch size (0: " + ", ".join(f"{b} {p}" for p, b in DEFAULT_BATCH.items()) + ")"
flags.DEFINE_multi_string(
    "set", [], "config override for every preset config, KEY=VALUE (repeatable), e.g. "
    "--set=network.compute_dtype=bfloat16 --set=network.remat=True"
)
# DataInfo known without TFDS: synthetic batches need no prepared data set.
OFFLINE_INFO = {"cifar10": DataInfo(shape=(32, 32, 3), num_classes=10, num_examples=50_000)}


# --- configs and inputs ---------------------------------------------------------------------------


def _import(module: str) -> Any | None:
    """The module named `module`, or None where it does not exist."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None


def _digits_config(objective: str) -> ml_collections.ConfigDict:
    """configs/digits_<objective>.py, else configs/digits.py's base with CIFAR-10's objective."""
    module = _import(f"configs.digits_{objective}")
    if module is not None:
        return module.get_config()
    c = importlib.import_module("configs.digits").base_config()
    cifar = importlib.import_module(f"configs.cifar10_{objective}").get_config()
    c.objective, c.optim = cifar.objective, cifar.optim
    c.sample.multistep_sigmas = cifar.sample.multistep_sigmas
    return c


def preset_config(
    preset: str, objective: str, keep_lpips: bool = False
) -> ml_collections.ConfigDict:
    """The `objective` ('edm', 'cd', 'ct', 'ict', 'ect') config of a preset; LPIPS -> l2 unless `keep_lpips`.

    LPIPS needs downloaded VGG weights; l2 times the same consistency step without its VGG pass.
    """
    if preset == "digits":
        c = _digits_config(objective)
    else:
        c = importlib.import_module(f"configs.{preset}_{objective}").get_config()
    if c.objective.distance == "lpips" and not keep_lpips:
        c.objective.distance = "l2"
    for item in flags.FLAGS.set:
        key, _, value = item.partition("=")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass  # a plain string
        section, name = key.rsplit(".", 1)
        target = c
        for part in section.split("."):
            target = target[part]
        target[name] = value  # ConfigDict refuses unknown keys and wrong types
    return c


def dataset_info(config: ml_collections.ConfigDict) -> DataInfo:
    """What config's network sees: config.data's DataInfo (CIFAR-10's without TFDS), for a latent
    config with the shape of its latents (`digits_latent_shape`)."""
    if config.data.name in OFFLINE_INFO and not config.data.image_size:
        info = OFFLINE_INFO[config.data.name]
    else:
        info = data_info(config.data)
    if config.autoencoder.kind == "none":
        return info
    if config.autoencoder.kind != "digits":
        kind = config.autoencoder.kind
        raise ValueError(f"Latent steps are timed in the digits autoencoder's latents, not {kind!r}.")
    return dataclasses.replace(info, shape=digits_latent_shape(info.shape))


@functools.cache
def digits_latent_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of configs/digits_autoencoder.py's latents of images of `shape` (traced, not run)."""
    config = importlib.import_module("configs.digits_autoencoder").get_config()
    model = build_network(config.network, 0)
    x = jnp.zeros((1, *shape), jnp.float32)
    params = jax.eval_shape(lambda k: init_params(model, k, x, 0), jax.random.key(0))
    encode = lambda p, x: model.apply({"params": p}, x, method=type(model).encode)
    return jax.eval_shape(encode, params, x).shape[1:]


def num_classes(config: ml_collections.ConfigDict) -> int:
    """The classes config's network is conditioned on (0 unless config.data.conditional)."""
    return num_labels(config.data, dataset_info(config))


def init_network_params(config: ml_collections.ConfigDict, shape: tuple[int, ...], classes: int = 0) -> Any:
    """Parameters of config.network (with `classes` labels) for inputs of `shape`, initialised under jit."""
    model = build_network(config.network, classes)
    example = jnp.zeros((1, *shape), jnp.float32)
    params = jax.jit(lambda k: init_params(model, k, example, classes))(jax.random.key(config.seed))
    return jax.block_until_ready(params)


def synthetic_batch(info: DataInfo, batch: int) -> dict[str, jax.Array]:
    """A device batch shaped like the pipeline's: x in [-1, 1] (and int32 labels where it has them)."""
    x = jax.random.uniform(jax.random.key(1), (batch, *info.shape), minval=-1.0, maxval=1.0)
    out = {"x": x}
    if info.num_classes:
        out["label"] = jnp.zeros((batch,), jnp.int32)
    return out


# --- device and host ------------------------------------------------------------------------------


def host_cpu() -> str:
    """The host CPU as /proc/cpuinfo names it (vendor model name, family/model, AVX-512 or not).

    Hosts with the same core count differ several-fold in FLOP/s; results name theirs.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines()[:40]) if v
    )
    avx512 = "avx512f" in fields.get("flags", "").split()
    return (
        f"{fields.get('model name', 'unknown')} (family {fields.get('cpu family', '?')}, model "
        f"{fields.get('model', '?')}{', AVX-512' if avx512 else ''})"
    )


def device_info() -> dict[str, Any]:
    """Platform, device kind and count, JAX version, host CPUs and the default matmul precision."""
    d = jax.devices()[0]
    return {
        "platform": d.platform,
        "device_kind": d.device_kind,
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "host_cpus": os.cpu_count(),
        "host_cpu": host_cpu(),
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
    }


def device_slug() -> str:
    """A file-name-safe device name, e.g. 'cpu' or 'nvidia-h100-80gb-hbm3'."""
    return re.sub(r"[^a-z0-9]+", "-", jax.devices()[0].device_kind.lower()).strip("-")


def load_average() -> list[float]:
    """The host's 1-, 5- and 15-minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def host_memory() -> dict[str, float]:
    """Process peak RSS (MiB) and, on accelerators, the device's peak bytes in use (MiB) so far."""
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["device_peak_mib"] = stats["peak_bytes_in_use"] / 2**20
    return out


# --- compile, cost, time --------------------------------------------------------------------------


def compile_timed(jitted: Any, *args: Any) -> tuple[Any, float]:
    """`jitted.lower(*args).compile()` and the seconds it took (trace, lower and compile)."""
    t = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t


def flops(compiled: Any) -> float:
    """FLOPs of one call from XLA's cost analysis (loop bodies count once)."""
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def memory(compiled: Any) -> dict[str, float]:
    """XLA's static buffer sizes of a compiled call (MiB): arguments, outputs, temporaries, peak."""
    m = compiled.memory_analysis()
    mib = lambda n: n / 2**20
    peak = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )
    return {
        "args_mib": mib(m.argument_size_in_bytes),
        "temp_mib": mib(m.temp_size_in_bytes),
        "peak_mib": mib(peak),
    }


def blocked_times(call: Callable[[], Any], warmup: int, reps: int) -> list[float]:
    """Seconds of each of `reps` calls, each waited for with block_until_ready, after `warmup` calls."""
    for _ in range(warmup):
        jax.block_until_ready(call())
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - t)
    return times


MATMUL_SIZE: int | None = None  # None: 2048 on CPU, 8192 on accelerators (device_check's dry run: 256)


@functools.cache
def _matmul(dtype: str) -> tuple[Any, jax.Array, jax.Array]:
    n = MATMUL_SIZE or (2048 if jax.devices()[0].platform == "cpu" else 8192)
    a, b = jax.random.normal(jax.random.key(0), (2, n, n), jnp.float32).astype(dtype)
    return compile_timed(jax.jit(jnp.matmul), a, b)[0], a, b


def matmul_peak(reps: int = 5, dtype: str = "float32") -> float:
    """Median FLOP/s of a large matrix product in `dtype` (n = 2048 on CPU, 8192 on accelerators).

    The practical peak; each row measures it beside its own timing, as a shared host's load moves.
    Steps computing in bfloat16 (network.compute_dtype) are measured against a bfloat16 product.
    """
    compiled, a, b = _matmul(dtype)
    times = blocked_times(lambda: compiled(a, b), warmup=1, reps=reps)
    return 2 * a.shape[0] ** 3 / statistics.median(times)


# --- output ---------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str) -> None:
    """Rows as an aligned text table of `columns` (missing cells blank)."""
    cells = [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))


def write_json(record: dict[str, Any], out: str | None) -> Path:
    """Write `record` to `out`, default benchmarks/results/<device>-<date>.json; return the path."""
    path = (
        Path(out) if out else RESULTS_DIR / f"{device_slug()}-{datetime.date.today():%Y%m%d}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def header(args: dict[str, Any]) -> dict[str, Any]:
    """The common head of a result file: when, where, with which of the benchmark's own arguments
    (its script's flags and this module's, not absl's or JAX's)."""
    own = {
        flag.name
        for module, module_flags in flags.FLAGS.flags_by_module_dict().items()
        if module in (sys.argv[0], "__main__", __name__) or module.endswith("benchmarks/common.py")
        for flag in module_flags
    }
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": device_info(),
        "args": {k: v for k, v in args.items() if k in own},
        "load_average_start": load_average(),
    }
