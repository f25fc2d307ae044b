"""Every benchmark in one command: train steps, input pipeline and samplers, one table each, one JSON.

    python benchmarks/run.py                                   # digits and CIFAR-10, default batches
    python benchmarks/run.py --presets=digits --train_steps=5  # a quick look
    python benchmarks/run.py --presets=cifar10 --batch=128     # on a GPU

Each row's FLOP fraction uses a float32 matmul timed right after it (a shared host's load moves).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from absl import app, flags

from benchmarks import common, sampling, train_step

flags.DEFINE_list("presets", ["digits", "cifar10"], "presets to run: digits, cifar10")
flags.DEFINE_integer("batch", 0, common.BATCH_HELP)
flags.DEFINE_list("objectives", list(train_step.OBJECTIVES), "objectives to time")
flags.DEFINE_integer("warmup", 1, "untimed calls after compilation")
flags.DEFINE_integer("train_steps", 5, "timed train steps per objective (median reported)")
flags.DEFINE_bool("pipeline", True, "time the loop fed by build_dataset vs synthetic data")
flags.DEFINE_integer("pipeline_steps", 10, "loop iterations per pipeline measurement")
flags.DEFINE_integer("pipeline_repeats", 5, "alternating synthetic / real measurements")
flags.DEFINE_integer("sample_reps", 5, "timed calls of the one- and two-step samplers")
flags.DEFINE_integer("teacher_reps", 1, "timed calls of the 35-NFE teacher sampler")
flags.DEFINE_bool(
    "keep_lpips", False, "keep the configs' LPIPS distance (needs its weights) instead of l2"
)
flags.DEFINE_string("out", "", "JSON path (default benchmarks/results/<device>-<date>.json)")


def main(_) -> None:
    f = flags.FLAGS
    record = common.header(f.flag_values_dict())
    train, pipe, samples = [], [], []
    for preset in f.presets:
        batch = f.batch or common.DEFAULT_BATCH[preset]
        rows, p = train_step.run(
            preset,
            f.objectives,
            batch,
            f.warmup,
            f.train_steps,
            f.pipeline,
            f.pipeline_steps,
            f.pipeline_repeats,
            f.keep_lpips,
        )
        train, pipe = train + rows, pipe + p
        samples += sampling.run(preset, batch, f.warmup, f.sample_reps, f.teacher_reps)
    sampling.add_derived(samples)
    record.update(
        train=train, pipeline=pipe, sampling=samples, load_average_end=common.load_average()
    )
    print(
        f"\ndevice {record['device']['device_kind']}, load average at start {record['load_average_start']}"
    )
    common.print_table(train, train_step.TRAIN_COLUMNS, "train step")
    if pipe:
        common.print_table(pipe, train_step.PIPELINE_COLUMNS, "input pipeline")
    common.print_table(samples, sampling.COLUMNS, "sampling")
    print(f"\nwrote {common.write_json(record, f.out or None)}")


if __name__ == "__main__":
    app.run(main)
