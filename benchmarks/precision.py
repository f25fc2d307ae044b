"""bfloat16 against float32 on the digits teacher run: the loss curves and the step time.

    python benchmarks/precision.py --steps=1000

Trains configs/digits_edm.py twice through train.train from the same seed (same init, batches and
noise), once per network.compute_dtype, and compares the logged losses in windows of --window
steps. Expect bfloat16 to be slower on a CPU (no fast bfloat16 convolutions); it is for GPUs/TPUs.
"""

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from absl import app, flags, logging

from benchmarks import common
from consistency_jax.jobs import train

flags.DEFINE_integer("steps", 1000, "train steps per run")
flags.DEFINE_integer("window", 100, "steps per compared window (a multiple of 10)")
flags.DEFINE_string("out", "", "JSON path (default benchmarks/results/precision-<device>-<date>.json)")


def loss_curve(compute_dtype: str, steps: int, workdir: str) -> tuple[np.ndarray, float]:
    """Loss at every 10th step of a digits teacher run in `compute_dtype`, and its wall seconds."""
    c = common.preset_config("digits", "edm")
    c.network.compute_dtype = compute_dtype
    c.train.num_steps, c.train.log_every, c.train.ckpt_every = steps, 10, steps
    c.sample.num_samples = c.sample.batch_size = 100
    t = time.perf_counter()
    train.train(c, workdir)
    seconds = time.perf_counter() - t
    with open(Path(workdir) / "metrics.jsonl") as f:
        return np.array([json.loads(line)["loss"] for line in f]), seconds


def main(_) -> None:
    f = flags.FLAGS
    logging.set_verbosity(logging.WARNING)
    record = common.header(f.flag_values_dict())
    curves, seconds = {}, {}
    for dtype in ("float32", "bfloat16"):
        with tempfile.TemporaryDirectory() as workdir:
            curves[dtype], seconds[dtype] = loss_curve(dtype, f.steps, workdir)
    per = f.window // 10
    windows = {d: c[: len(c) // per * per].reshape(-1, per).mean(axis=1) for d, c in curves.items()}
    rows = [
        {"steps": f"{i * f.window}-{(i + 1) * f.window}", "float32": a, "bfloat16": b,
         "rel_diff": b / a - 1}
        for i, (a, b) in enumerate(zip(windows["float32"], windows["bfloat16"]))
    ]
    common.print_table(rows, ("steps", "float32", "bfloat16", "rel_diff"), "mean loss per window")
    print(f"\nrun wall time (incl. compile and samples): {seconds}")
    record.update(windows=rows, run_seconds=seconds, load_average_end=common.load_average())
    default = common.RESULTS_DIR / f"precision-{common.device_slug()}.json"
    print(f"wrote {common.write_json(record, f.out or str(default))}")


if __name__ == "__main__":
    app.run(main)
