"""Sampling throughput: one-step and two-step consistency sampling vs the teacher's Heun ODE (35 NFE).

    python benchmarks/sampling.py --preset=digits --batch=128
    python benchmarks/sampling.py --preset=cifar10 --batch=8 --reps=2 --teacher_reps=1

The samplers are generate.make_sampler's, compiled ahead, with random parameters (the cost does
not depend on them). FLOPs are NFE x the one-step sampler's (XLA counts a loop body once).
"""

import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
from absl import app, flags

from benchmarks import common
from consistency_jax.evaluation import samples as generate
from consistency_jax.networks import build_network

COLUMNS = (
    "preset",
    "sampler",
    "nfe",
    "batch",
    "compile_s",
    "batch_s",
    "min_s",
    "img_s",
    "flop_s",
    "matmul_flop_s",
    "peak_frac",
    "speedup_vs_teacher",
    "peak_mib",
    "load_average",
)


def sampler_configs(preset: str, batch: int) -> list[tuple[str, Any]]:
    """(sampler name, config) for the teacher's Heun ODE (edm config) and one-/two-step (cd config)."""
    out = []
    for objective in ("cd", "edm"):
        config = common.preset_config(preset, objective)
        config.sample.batch_size = batch
        out += [(name, config) for name in generate.sampler_names(config)]
    return out


def nfe(name: str, config: Any) -> int:
    """Network evaluations per sample: 1 per consistency step, 2 N - 1 for the teacher's Heun ODE."""
    if config.objective.name == "edm":
        return 2 * config.sample.teacher_steps - 1
    return 1 if name == "onestep" else 1 + len(config.sample.multistep_sigmas)


def bench_sampler(preset: str, name: str, config: Any, params: Any, warmup: int, reps: int) -> dict:
    """One row: compile time, memory and time per batch of one sampler."""
    model = build_network(config.network, 0)
    sampler = generate.make_sampler(config, model, name, common.dataset_info(config).shape)
    key = jax.random.key(4)
    compiled, compile_s = common.compile_timed(sampler, params, key, None)  # unconditional
    times = common.blocked_times(lambda: compiled(params, key, None), warmup, reps)
    median = statistics.median(times)
    batch = config.sample.batch_size
    return {
        "preset": preset,
        "sampler": name,
        "nfe": nfe(name, config),
        "batch": batch,
        "compile_s": compile_s,
        "batch_s": median,
        "min_s": min(times),
        "img_s": batch / median,
        "xla_gflop": common.flops(compiled) / 1e9,
        "matmul_dtype": config.network.compute_dtype,
        "matmul_flop_s": common.matmul_peak(dtype=config.network.compute_dtype),
        "times_s": times,
        **common.memory(compiled),
        **common.host_memory(),
        "load_average": common.load_average(),
    }


def add_derived(rows: list[dict]) -> None:
    """FLOP/s (NFE x one evaluation's FLOPs), its fraction of the row's matmul, speed-up over the teacher."""
    per_eval = {r["preset"]: r["xla_gflop"] * 1e9 for r in rows if r["sampler"] == "onestep"}
    teacher = {r["preset"]: r["img_s"] for r in rows if r["sampler"].startswith("teacher")}
    for r in rows:
        if r["preset"] in per_eval:
            r["flop_s"] = r["nfe"] * per_eval[r["preset"]] / r["batch_s"]
            r["peak_frac"] = r["flop_s"] / r["matmul_flop_s"]
        if r["preset"] in teacher:
            r["speedup_vs_teacher"] = r["img_s"] / teacher[r["preset"]]


def run(preset: str, batch: int, warmup: int, reps: int, teacher_reps: int) -> list[dict]:
    """Rows for one-step, two-step and the teacher's sampler at one batch size."""
    pairs = sampler_configs(preset, batch)
    params = common.init_network_params(pairs[0][1], common.dataset_info(pairs[0][1]).shape)
    rows = []
    for name, config in pairs:
        n = teacher_reps if config.objective.name == "edm" else reps
        rows.append(bench_sampler(preset, name, config, params, min(warmup, n), n))
        print(f"  {preset} {name}: {rows[-1]['batch_s']:.3g} s/batch", flush=True)
    return rows


def define_flags() -> None:
    flags.DEFINE_string("preset", "digits", "digits | cifar10 (comma-separated for several)")
    flags.DEFINE_integer("batch", 0, common.BATCH_HELP)
    flags.DEFINE_integer("warmup", 1, "untimed calls after compilation (at most the timed count)")
    flags.DEFINE_integer("reps", 10, "timed calls of the consistency samplers (median reported)")
    flags.DEFINE_integer("teacher_reps", 3, "timed calls of the 35-NFE teacher sampler")
    flags.DEFINE_string("out", "", "JSON path (default benchmarks/results/<device>-<date>.json)")


def main(_) -> None:
    f = flags.FLAGS
    record = common.header(f.flag_values_dict())
    rows = []
    for preset in f.preset.split(","):
        rows += run(
            preset, f.batch or common.DEFAULT_BATCH[preset], f.warmup, f.reps, f.teacher_reps
        )
    add_derived(rows)
    record.update(sampling=rows, load_average_end=common.load_average())
    common.print_table(rows, COLUMNS, "sampling")
    print(f"\nwrote {common.write_json(record, f.out or None)}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
