"""Where a train step's time goes: its sub-parts timed apart, and XLA ops from a jax.profiler trace.

    python benchmarks/profile_step.py --preset=digits --objective=cd --batch=128
    python benchmarks/profile_step.py --preset=cifar10 --objective=cd --batch=2 --reps=1 --trace_steps=1

Sub-parts (each compiled alone, median of --reps blocked calls): one network evaluation, the loss,
the loss and its gradient, the whole step; differences give the backward pass and the optimizer,
EMA and finiteness check. The trace (kept in --trace_dir) is summed per HLO instruction over all
threads, and per category (grouped convolution, XNNPACK/oneDNN fusion, other fusions, ...).
"""

import collections
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import common, train_step
from consistency_jax.networks import build_network
from consistency_jax.training.objectives import make_objective

_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%(\S+) = \S+ (\w+)\((.*)$")
_OP_NAME = re.compile(r'op_name="([^"]+)"')


def time_compiled(jitted: Any, args: tuple, reps: int) -> dict[str, float]:
    """Compile `jitted` at `args`; its median seconds over `reps` blocked calls and its FLOPs."""
    compiled, _ = common.compile_timed(jitted, *args)
    times = common.blocked_times(lambda: compiled(*args), warmup=1, reps=reps)
    return {"s": statistics.median(times), "gflop": common.flops(compiled) / 1e9}


def sub_parts(config: Any, params: Any, batch: dict, reps: int) -> dict[str, dict[str, float]]:
    """Median seconds and FLOPs of the network, loss, loss+grad and full step; differences derived."""
    model = build_network(config.network, 0)
    dim = int(np.prod(batch["x"].shape[1:]))
    objective = make_objective(config, model, model if config.objective.name == "cd" else None, dim)
    x, sigma, key, step0 = (
        batch["x"],
        jnp.ones(batch["x"].shape[:1]),
        jax.random.key(0),
        jnp.zeros((), jnp.int32),
    )
    frozen = objective.frozen_inputs(params if objective.needs_teacher else None)
    target = params if objective.target_ema is not None else None
    loss = lambda p, t, fr: objective.loss(p, t, fr, batch, key, step0)[0]
    out = {
        "network": time_compiled(
            jax.jit(lambda p: model.apply({"params": p}, x, sigma, None)), (params,), reps
        ),
        "loss": time_compiled(jax.jit(loss), (params, target, frozen), reps),
        "loss_and_grad": time_compiled(
            jax.jit(jax.value_and_grad(loss)), (params, target, frozen), reps
        ),
    }
    step = train_step.build_step(config, params, batch)
    times = train_step.time_step(step, batch, warmup=1, reps=reps)
    out["step"] = {"s": statistics.median(times), "gflop": common.flops(step.compiled) / 1e9}
    out["backward (derived)"] = {"s": out["loss_and_grad"]["s"] - out["loss"]["s"]}
    out["optimizer+ema+check (derived)"] = {"s": out["step"]["s"] - out["loss_and_grad"]["s"]}
    return out


def instruction_table(hlo_text: str) -> dict[str, tuple[str, str]]:
    """HLO instruction name -> (category, op_name from its metadata)."""
    table = {}
    for line in hlo_text.splitlines():
        m = _INSTRUCTION.match(line)
        if m:
            name, opcode, rest = m.groups()
            op_name = _OP_NAME.search(rest)
            table[name] = (_category(opcode, rest), op_name.group(1) if op_name else "")
    return table


def _category(opcode: str, rest: str) -> str:
    if opcode == "convolution":
        return "grouped conv (depthwise)" if "feature_group_count" in rest else "conv"
    if opcode == "fusion":
        kind = re.search(r'"kind":"(\w+)"', rest)
        return f"fusion {kind.group(1)}" if kind else "fusion (elementwise/reduce)"
    return opcode


def trace_ops(step: "train_step.Step", batch: dict, steps: int, trace_dir: str) -> dict[str, float]:
    """Seconds per HLO instruction, summed over threads and `steps` traced steps."""
    key = jax.random.key(5)
    jax.block_until_ready(step(batch, key))
    with jax.profiler.trace(trace_dir):
        for i in range(steps):
            jax.block_until_ready(step(batch, jax.random.fold_in(key, i)))
    path = max(Path(trace_dir).rglob("*.xplane.pb"))
    seconds = collections.Counter()
    for plane in jax.profiler.ProfileData.from_file(str(path)).planes:
        for line in plane.lines:
            for event in line.events:
                seconds[event.name] += event.duration_ns * 1e-9
    return seconds


def summarise(
    seconds: dict[str, float], table: dict[str, tuple[str, str]], top: int
) -> tuple[list, list]:
    """(category rows, top instruction rows) with shares of the total time of the step's instructions."""
    ops = {n: s for n, s in seconds.items() if n in table}
    total = sum(ops.values())
    by_category = collections.Counter()
    for name, s in ops.items():
        by_category[table[name][0]] += s
    categories = [
        {"category": c, "s": s, "pct": 100 * s / total} for c, s in by_category.most_common()
    ]
    heaviest = sorted(ops.items(), key=lambda kv: -kv[1])[:top]
    instructions = [
        {
            "instruction": n,
            "category": table[n][0],
            "s": s,
            "pct": 100 * s / total,
            "op_name": table[n][1][-90:],
        }
        for n, s in heaviest
    ]
    return categories, instructions


def define_flags() -> None:
    flags.DEFINE_string("preset", "digits", "digits | cifar10")
    flags.DEFINE_string("objective", "cd", "edm | cd | ct | ict")
    flags.DEFINE_integer("batch", 0, common.BATCH_HELP)
    flags.DEFINE_integer("reps", 3, "timed calls per sub-part")
    flags.DEFINE_integer("trace_steps", 2, "steps traced with jax.profiler (0: no trace)")
    flags.DEFINE_integer("top", 15, "instructions listed")
    flags.DEFINE_string("trace_dir", "", "where the trace goes (default: a temporary folder)")
    flags.DEFINE_string(
        "out",
        "",
        "JSON path (default benchmarks/results/profile-<preset>-<objective>-<device>.json)",
    )


def main(_) -> None:
    f = flags.FLAGS
    record = common.header(f.flag_values_dict())
    config = common.preset_config(f.preset, f.objective)
    info = common.dataset_info(config)
    params = common.init_network_params(config, info.shape)
    batch = common.synthetic_batch(info, f.batch or common.DEFAULT_BATCH[f.preset])
    parts = sub_parts(config, params, batch, f.reps)
    common.print_table(
        [{"part": k, **v} for k, v in parts.items()], ("part", "s", "gflop"), "sub-parts"
    )
    record["sub_parts"] = parts
    if f.trace_steps:
        step = train_step.build_step(config, params, batch)
        seconds = trace_ops(
            step, batch, f.trace_steps, f.trace_dir or tempfile.mkdtemp(prefix="trace-")
        )
        categories, instructions = summarise(
            seconds, instruction_table(step.compiled.as_text()), f.top
        )
        common.print_table(
            categories, ("category", "s", "pct"), "op time by category (all threads)"
        )
        common.print_table(
            instructions,
            ("instruction", "category", "s", "pct", "op_name"),
            "heaviest instructions",
        )
        record.update(categories=categories, instructions=instructions)
    record["load_average_end"] = common.load_average()
    default = common.RESULTS_DIR / f"profile-{f.preset}-{f.objective}-{common.device_slug()}.json"
    print(f"\nwrote {common.write_json(record, f.out or str(default))}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
