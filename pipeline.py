"""The end-to-end pipeline on an embedded data set: python pipeline.py --preset=digits --workdir=runs/digits."""

import os
import sys

import jax
from absl import app, flags, logging

from configs.presets import DEFAULT_STAGES, PRESETS
from consistency_jax.errors import ConfigError
from consistency_jax.jobs.end_to_end import results_table, run_pipeline
from consistency_jax.jobs.user_errors import USER_ERRORS
from consistency_jax.training import checkpoint, compile_cache

flags.DEFINE_enum("preset", "digits", sorted(PRESETS), "Which embedded data set and configs.")
flags.DEFINE_string("workdir", None, "Directory for all stages, the results table and the plot.")
flags.DEFINE_list("stages", list(DEFAULT_STAGES), "Stages to run; a teacher is required (edm; edm_cond for lcm).")
flags.DEFINE_bool(
    "concurrent", True,
    "On a CPU, train the stages that learn from data alone (ct, ict) in a second process while the "
    "teacher and CD train; once the teacher is done that process trains the stages started from it "
    "(ect), then evaluates its stages and the teacher while CD trains (ignored on accelerators: one "
    "process holds the device).",
)
flags.DEFINE_list(
    "seeds", ["0"],
    "Training seeds: with several, every stage but the teachers and the autoencoder trains once per "
    "seed K (seed 0 in WORKDIR/<stage>, seed K in WORKDIR/seed<K>/<stage>) and results.md gives the "
    "mean and range over them.",
)
compile_cache.define_flag()
flags.declare_key_flag("compilation_cache")  # listed in --help
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def parse_seeds(values: list[str]) -> tuple[int, ...]:
    """--seeds=0,1,2 as integers; ConfigError naming the flag otherwise."""
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        got = ",".join(values)
        raise ConfigError(f"--seeds takes comma-separated integers (e.g. --seeds=0,1,2), got {got!r}.") from None


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.INFO)
    compile_cache.enable_compilation_cache(FLAGS.compilation_cache)
    checkpoint.hide_orbax_info()
    concurrent = FLAGS.concurrent and jax.default_backend() == "cpu"
    try:
        rows = run_pipeline(
            PRESETS[FLAGS.preset], FLAGS.workdir, tuple(FLAGS.stages), concurrent, FLAGS.compilation_cache,
            seeds=parse_seeds(FLAGS.seeds),
        )
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except checkpoint.Preempted as e:  # rerunning resumes the stage it stopped
        logging.warning("%s", e)
        sys.exit(e.exit_status)
    print(results_table(rows))
    names = ("results.md", "results.json", "samples.png")
    stages = ", ".join(os.path.join(FLAGS.workdir, s) for s in FLAGS.stages)
    print(f"wrote: {', '.join(os.path.join(FLAGS.workdir, n) for n in names)}, and the runs {stages}")


if __name__ == "__main__":
    app.run(main)
