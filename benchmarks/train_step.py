"""Training-step throughput of the teacher (edm) and the consistency steps (CD, CT, iCT, ECT, sCT, sCD,
MeanFlow), and the input pipeline's cost.

    python benchmarks/train_step.py --preset=digits --batch=128
    python benchmarks/train_step.py --preset=cifar10 --batch=8 --steps=2 --warmup=1 --pipeline=False
    python benchmarks/train_step.py --preset=digits --objectives=edm_cond,lcm,latent_edm,latent_cd,latent_ict

(the last: configs/digits_<name>.py, the conditional teacher and guided CD (LCM), and the steps in
the digits autoencoder's latents, each beside the EDM step of its own network and input: vs_edm.)

Each step is compiled ahead (`lower().compile()`: compile time, XLA FLOPs and buffer sizes), then
timed over --steps calls, each waited for, after --warmup calls. The CD (sCD) step runs its teacher's Heun
step (dx_t/dt) with random teacher parameters. --pipeline also runs the loop as train.py does (no wait per
step) fed once by a synthetic device batch and once by consistency_jax.data.build_dataset.
--dispatch=K runs that loop on a synthetic batch with one step per call and with K steps per call
(config.train.steps_per_dispatch), alternating:

    python benchmarks/train_step.py --preset=toy --objectives=edm,ict --pipeline=False --dispatch=8
"""

import copy
import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags

from benchmarks import common
from consistency_jax.data import DatasetUnavailableError, build_dataset
from consistency_jax.jobs.train import step_keys
from consistency_jax.networks import build_network
from consistency_jax.training.objectives import make_objective, needs_teacher
from consistency_jax.training.state import create_train_state, make_optimizer
from consistency_jax.training.step import make_train_step

OBJECTIVES = ("edm", "cd", "ct", "ict", "ect", "sct", "scd", "meanflow")


@dataclasses.dataclass
class Step:
    """A compiled train step and the arguments it is called with; `state` is donated each call."""

    compiled: Any
    state: Any
    frozen: tuple
    compile_s: float

    def __call__(self, batch: dict, rng: jax.Array) -> Any:
        self.state, metrics = self.compiled(self.state, batch, rng, *self.frozen)
        return metrics


def build_step(config: ml_collections.ConfigDict, params: Any, batch: dict, steps_per_call: int = 1) -> Step:
    """Compile make_train_step's step for `config`, its frozen inputs (teacher, distance) arguments.

    `params` (never donated) start the state's copies and serve as the CD teacher's parameters;
    a guided student's (LCM's w-embedding) teacher is the same network without that embedding, at
    its own random parameters. With `steps_per_call` k > 1 the step makes k steps per call and
    `batch` holds k stacked batches.
    """
    classes = common.num_classes(config)
    shape = batch["x"].shape[2 if steps_per_call > 1 else 1 :]  # one example's
    model = build_network(config.network, classes)
    teacher_model, teacher_params = model, params
    if config.network.guidance_embedding:
        teacher_config = copy.deepcopy(config)
        teacher_config.network.guidance_embedding = False
        teacher_model = build_network(teacher_config.network, classes)
        teacher_params = common.init_network_params(teacher_config, shape, classes)
    dim = int(np.prod(shape))
    distils = needs_teacher(config.objective.name)
    objective = make_objective(config, model, teacher_model if distils else None, dim)
    optimizer = make_optimizer(config.optim)
    state = create_train_state(jax.tree.map(jnp.copy, params), optimizer, objective, teacher_params=teacher_params)
    frozen = (teacher_params if objective.needs_teacher else None, objective.frozen)

    def step(state, batch, rng, teacher, objective_frozen):
        inner = dataclasses.replace(objective, frozen=objective_frozen)
        return make_train_step(
            inner, optimizer, config.train.ema_rate, teacher, steps_per_call=steps_per_call
        )(state, batch, rng)

    jitted = jax.jit(step, donate_argnums=0)
    keys = step_keys(jax.random.key(0), 0, steps_per_call)
    compiled, seconds = common.compile_timed(jitted, state, batch, keys, *frozen)
    return Step(compiled, state, frozen, seconds)


def time_step(step: Step, batch: dict, warmup: int, reps: int, first: int = 0) -> list[float]:
    """Seconds per blocked step, a fresh rng each call (folded from `first` on), as the train loop
    folds it."""
    key, count = jax.random.key(2), iter(range(first, 1 << 30))
    return common.blocked_times(
        lambda: step(batch, jax.random.fold_in(key, next(count))), warmup, reps
    )


def loop_seconds(step: Step, next_batch: Any, steps: int, k: int = 1) -> float:
    """Wall time of `steps` steps of train.py's loop (next batch, step; `k` steps per call),
    then one wait."""
    key = jax.random.key(3)
    jax.block_until_ready(step(next_batch(), step_keys(key, 0, k)))  # primes the loop
    t = time.perf_counter()
    for i in range(k, steps + k, k):
        metrics = step(next_batch(), step_keys(key, i, k))
    jax.block_until_ready((metrics, step.state))
    return time.perf_counter() - t


def pipeline_only_seconds(it: Any, batches: int) -> float:
    """Seconds per batch of the pipeline alone, device transfer included."""
    jax.block_until_ready(jax.device_put(next(it)))
    t = time.perf_counter()
    for _ in range(batches):
        jax.block_until_ready(jax.device_put(next(it)))
    return (time.perf_counter() - t) / batches


def bench_pipeline(
    preset: str, config: ml_collections.ConfigDict, step: Step, batch: dict, steps: int,
    repeats: int,
) -> dict:
    """The train loop fed by a synthetic device batch vs by build_dataset (one device: device_put),
    `repeats` times, the two alternating so that load drifts reach both alike.

    overhead_pct = 100 (real / synthetic - 1) of each pair: what the pipeline adds to the loop's
    wall time; the row reports their median and range.
    """
    data = config.data.copy_and_resolve_references()
    data.batch_size = batch["x"].shape[0]
    row = {
        "preset": preset,
        "objective": config.objective.name,
        "batch": data.batch_size,
        "steps": steps,
    }
    try:
        it, _ = build_dataset(data, seed=0)
    except DatasetUnavailableError as e:
        return {**row, "skipped": str(e).splitlines()[0][:120]}
    pairs = [
        (loop_seconds(step, lambda: batch, steps), loop_seconds(step, lambda: jax.device_put(next(it)), steps))
        for _ in range(repeats)
    ]
    synthetic, real = (statistics.median(p[j] for p in pairs) for j in (0, 1))
    overheads = sorted(100 * (r / s - 1) for s, r in pairs)
    n = data.batch_size * steps
    return {
        **row,
        "repeats": repeats,
        "synthetic_img_s": n / synthetic,
        "pipeline_img_s": n / real,
        "overhead_pct": statistics.median(overheads),
        "overhead_pct_range": [overheads[0], overheads[-1]],
        "pipeline_alone_ms_per_batch": 1e3 * pipeline_only_seconds(it, max(steps, 20)),
        "load_average": common.load_average(),
    }


def bench_dispatch(
    config: ml_collections.ConfigDict, preset: str, params: Any, batch: dict, k: int, steps: int,
    repeats: int,
) -> dict:
    """train.py's loop on a device-resident batch, one step per call vs `k` (lax.scan), `repeats`
    alternating pairs of `steps` steps; speedup = one-step time / k-step time of each pair."""
    stacked = jax.tree.map(lambda x: jnp.stack([x] * k), batch)
    single, scanned = build_step(config, params, batch), build_step(config, params, stacked, k)
    steps = -(-steps // k) * k
    pairs = [
        (loop_seconds(single, lambda: batch, steps), loop_seconds(scanned, lambda: stacked, steps, k))
        for _ in range(repeats)
    ]
    speedups = sorted(a / b for a, b in pairs)
    return {
        "preset": preset,
        "objective": config.objective.name,
        "batch": batch["x"].shape[0],
        "steps_per_dispatch": k,
        "single_ms": 1e3 * statistics.median(a for a, _ in pairs) / steps,
        "scanned_ms": 1e3 * statistics.median(b for _, b in pairs) / steps,
        "speedup": statistics.median(speedups),
        "speedup_range": [speedups[0], speedups[-1]],
        "compile_s": [single.compile_s, scanned.compile_s],
        "load_average": common.load_average(),
    }


def bench_objective(
    config: ml_collections.ConfigDict,
    preset: str,
    params: Any,
    batch: dict,
    warmup: int,
    steps: int,
    name: str = "",
) -> tuple[dict, Step]:
    """One row: compile time, FLOPs, memory and throughput of `config`'s step (`name`: the
    objective column, e.g. latent_cd; default config.objective.name)."""
    step = build_step(config, params, batch)
    time_step(step, batch, warmup, 0)
    # each timed step followed by a matmul rate: the two see the same moment of a shared host
    dtype = config.network.compute_dtype
    pairs = [(time_step(step, batch, 0, 1, warmup + i)[0], common.matmul_peak(dtype=dtype)) for i in range(steps)]
    times, peaks = [t for t, _ in pairs], [p for _, p in pairs]
    median = statistics.median(times)
    step_flops = common.flops(step.compiled)
    batch_size = batch["x"].shape[0]
    row = {
        "preset": preset,
        "objective": name or config.objective.name,
        "loss": config.objective.name,
        "network": config.network.name,
        "shape": list(batch["x"].shape[1:]),
        "classes": common.num_classes(config),
        "distance": config.objective.distance if config.objective.name != "edm" else "-",
        "params_m": sum(a.size for a in jax.tree.leaves(params)) / 1e6,
        "batch": batch_size,
        "compile_s": step.compile_s,
        "step_s": median,
        "min_s": min(times),
        "steps_s": 1 / median,
        "img_s": batch_size / median,
        "gflop_step": step_flops / 1e9,
        "flop_s": step_flops / median,
        "matmul_dtype": dtype,
        "matmul_flop_s": statistics.median(peaks),
        "matmul_flop_s_range": [min(peaks), max(peaks)],
        "peak_frac": statistics.median(step_flops / t / p for t, p in pairs),
        "times_s": times,
        **common.memory(step.compiled),
        **common.host_memory(),
        "load_average": common.load_average(),
    }
    return row, step


def add_vs_edm(rows: list[dict]) -> None:
    """vs_edm: a row's step time over the EDM step's on the same preset, network (input shape,
    classes), batch and compute dtype in the same run (the rows given), where that EDM row is among
    them."""
    ident = lambda r: (
        r["preset"], r.get("network"), str(r.get("shape")), r.get("classes"), r["batch"], r.get("matmul_dtype"),
        r.get("remat"),
    )
    edm = {ident(r): r["step_s"] for r in rows if r.get("loss", r.get("objective")) == "edm" and r.get("step_s")}
    for r in rows:
        if r.get("step_s") and ident(r) in edm:
            r["vs_edm"] = r["step_s"] / edm[ident(r)]


TRAIN_COLUMNS = (
    "preset",
    "objective",
    "batch",
    "compile_s",
    "step_s",
    "vs_edm",
    "min_s",
    "steps_s",
    "img_s",
    "gflop_step",
    "flop_s",
    "matmul_flop_s",
    "peak_frac",
    "peak_mib",
    "peak_rss_mib",
    "load_average",
)
DISPATCH_COLUMNS = (
    "preset", "objective", "batch", "steps_per_dispatch", "single_ms", "scanned_ms", "speedup",
    "speedup_range", "compile_s", "load_average",
)
PIPELINE_COLUMNS = (
    "preset",
    "objective",
    "batch",
    "synthetic_img_s",
    "pipeline_img_s",
    "overhead_pct",
    "overhead_pct_range",
    "pipeline_alone_ms_per_batch",
    "load_average",
    "skipped",
)


def setup(preset: str, objectives: list[str], batch: int, keep_lpips: bool) -> tuple[list, list, list]:
    """The objectives' configs, their network parameters and synthetic batches of `batch`.

    One initialisation serves every objective of one network and input (sCT and sCD add a
    loss-weighting head; a conditional network has a label embedding; a latent one sees latents).
    """
    configs = [common.preset_config(preset, o, keep_lpips) for o in objectives]
    infos = [common.dataset_info(c) for c in configs]
    networks = [(c.network.to_json(), i.shape, common.num_classes(c)) for c, i in zip(configs, infos)]
    inits, batches = {}, {}
    for c, info, network in zip(configs, infos, networks):
        if network not in inits:
            inits[network] = common.init_network_params(c, info.shape, network[2])
        if info.shape not in batches:
            batches[info.shape] = common.synthetic_batch(info, batch)
    return configs, [inits[n] for n in networks], [batches[i.shape] for i in infos]


def run_dispatch(
    preset: str, objectives: list[str], batch: int, k: int, steps: int, repeats: int, keep_lpips: bool
) -> list[dict]:
    """A one-step-per-call vs k-steps-per-call row for each objective."""
    configs, params, batches = setup(preset, objectives, batch, keep_lpips)
    rows = []
    for config, network_params, synthetic in zip(configs, params, batches):
        rows.append(bench_dispatch(config, preset, network_params, synthetic, k, steps, repeats))
        print(f"  {preset} {config.objective.name}: {k} steps per call {rows[-1]['speedup']:.3g}x", flush=True)
    return rows


def run(
    preset: str,
    objectives: list[str],
    batch: int,
    warmup: int,
    steps: int,
    pipeline: bool,
    pipeline_steps: int,
    pipeline_repeats: int,
    keep_lpips: bool,
) -> tuple[list[dict], list[dict]]:
    """Train rows for each objective and, with `pipeline`, one synthetic-vs-real row (the first's)."""
    configs, params, batches = setup(preset, objectives, batch, keep_lpips)
    rows, pipe = [], []
    for name, config, network_params, synthetic in zip(objectives, configs, params, batches):
        row, step = bench_objective(config, preset, network_params, synthetic, warmup, steps, name)
        rows.append(row)
        if pipeline and not pipe and config.autoencoder.kind == "none":  # the data pipeline feeds pixels
            pipe.append(
                bench_pipeline(preset, config, step, synthetic, pipeline_steps, pipeline_repeats)
            )
        print(
            f"  {preset} {row['objective']}: {row['step_s']:.3g} s/step ({row['img_s']:.3g} img/s)",
            flush=True,
        )
    add_vs_edm(rows)
    return rows, pipe


def define_flags() -> None:
    flags.DEFINE_string("preset", "digits", "digits | cifar10 | toy (comma-separated for several)")
    flags.DEFINE_list(
        "objectives", list(OBJECTIVES),
        "objectives to time, or digits configs: edm_cond, lcm (guided CD), latent_edm, latent_cd, latent_ict",
    )
    flags.DEFINE_integer("batch", 0, common.BATCH_HELP)
    flags.DEFINE_integer("warmup", 2, "untimed calls after compilation")
    flags.DEFINE_integer("steps", 10, "timed calls (median reported)")
    flags.DEFINE_bool("pipeline", True, "also time the loop fed by build_dataset vs synthetic data")
    flags.DEFINE_integer("pipeline_steps", 20, "loop iterations per pipeline measurement")
    flags.DEFINE_integer("pipeline_repeats", 5, "alternating synthetic / real measurements")
    flags.DEFINE_integer("dispatch", 0, "also time the loop with this many steps per call (0: no)")
    flags.DEFINE_integer("dispatch_steps", 64, "loop steps per dispatch measurement")
    flags.DEFINE_integer("dispatch_repeats", 5, "alternating one-step / k-step measurements")
    flags.DEFINE_bool(
        "keep_lpips", False, "keep the configs' LPIPS distance (needs its weights) instead of l2"
    )
    flags.DEFINE_string("out", "", "JSON path (default benchmarks/results/<device>-<date>.json)")


def main(_) -> None:
    f = flags.FLAGS
    record = common.header(f.flag_values_dict())
    train, pipe, dispatch = [], [], []
    for preset in f.preset.split(","):
        rows, p = run(
            preset,
            f.objectives,
            f.batch or common.DEFAULT_BATCH[preset],
            f.warmup,
            f.steps,
            f.pipeline,
            f.pipeline_steps,
            f.pipeline_repeats,
            f.keep_lpips,
        )
        train, pipe = train + rows, pipe + p
        if f.dispatch:
            batch = f.batch or common.DEFAULT_BATCH[preset]
            dispatch += run_dispatch(
                preset, f.objectives, batch, f.dispatch, f.dispatch_steps, f.dispatch_repeats, f.keep_lpips
            )
    record.update(train=train, pipeline=pipe, dispatch=dispatch, load_average_end=common.load_average())
    common.print_table(train, TRAIN_COLUMNS, "train step")
    if pipe:
        common.print_table(pipe, PIPELINE_COLUMNS, "input pipeline")
    if dispatch:
        common.print_table(dispatch, DISPATCH_COLUMNS, "steps per dispatch")
    print(f"\nwrote {common.write_json(record, f.out or None)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
