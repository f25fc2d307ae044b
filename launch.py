"""Entry point: python launch.py --config=configs/X.py --workdir=DIR [--mode=train|sample|eval].

Any config key can be overridden: --config.optim.lr=2e-4.
Several processes (one per host): jax.distributed is initialised from --coordinator,
--num_processes and --process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID), or detected under SLURM, Open MPI and on Cloud TPU VMs. Every process runs
the same command; process 0 alone logs and writes files other than checkpoints.
"""

import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from consistency_jax import checkpoint, compile_cache, evaluate, parallel, train
from consistency_jax.config_checks import ConfigError
from consistency_jax.data import DatasetUnavailableError, data_info
from consistency_jax.evaluation import WeightsUnavailableError
from consistency_jax.networks import build_network

config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory of the run: checkpoints, config, metrics, samples.")
flags.DEFINE_enum(
    "mode", "train", ["train", "sample", "eval"],
    "train (resumes automatically), sample (from the latest checkpoint), or eval (FID/IS/KID).",
)
flags.DEFINE_string(
    "coordinator", os.environ.get("JAX_COORDINATOR_ADDRESS"), "HOST:PORT of process 0 (multi-process)."
)
flags.DEFINE_integer(
    "num_processes", int(os.environ["JAX_NUM_PROCESSES"]) if "JAX_NUM_PROCESSES" in os.environ else None,
    "Number of processes (multi-process; 1 or unset: one process unless SLURM/MPI/TPU says more).",
)
flags.DEFINE_integer(
    "process_id", int(os.environ["JAX_PROCESS_ID"]) if "JAX_PROCESS_ID" in os.environ else None,
    "This process's index, 0 .. num_processes - 1 (multi-process).",
)
flags.DEFINE_string(
    "eval_steps", "latest",
    "--mode=eval: latest, all (every kept checkpoint, oldest first), or steps as 1000,2000; "
    "checkpoints other than the latest are evaluated under workdir/eval/step_<step>/.",
)
compile_cache.define_flag()
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS

# Errors that are the user's to fix: print the message alone, no traceback.
USER_ERRORS = (
    ConfigError,
    DatasetUnavailableError,
    train.TeacherNotFoundError,
    train.NonFiniteLossError,
    checkpoint.CheckpointNotFoundError,
    checkpoint.CheckpointUnreadableError,
    checkpoint.CheckpointSaveError,
    WeightsUnavailableError,
)


def sample(config, workdir: str) -> None:
    """Write every configured sampler's samples from the run's latest checkpoint."""
    info = data_info(config.data)
    model = build_network(config.network, info.num_classes if config.data.conditional else 0)
    manager = checkpoint.make_manager(workdir)
    try:
        state = checkpoint.restore(manager, train.abstract_state(config, model, info))
    finally:
        manager.close()
    for name, path in train.write_samples(config, workdir, model, state.ema_params, info).items():
        logging.info("%s samples: %s", name, path)


def run_evals(config, workdir: str, spec: str) -> None:
    """Evaluate each checkpoint --eval_steps names; with several, log a table of the FIDs."""
    steps = evaluate.steps_to_evaluate(workdir, spec)
    rows = [evaluate.evaluate(config, workdir, step) for step in steps]
    if len(rows) > 1:
        for r in rows:
            fids = "  ".join(f"{name} {v['fid']:.4g}" for name, v in r["samplers"].items())
            logging.info("step %d: FID %s", r["step"], fids)


def init_distributed() -> None:
    """Join the other processes of the run, if there are any (before any other use of jax)."""
    args = parallel.distributed_args(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
    if args is None:
        return
    # Collectives between processes on the CPU backend (without them: "Multiprocess computations
    # aren't implemented on the CPU backend"); GPU and TPU backends have their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**args)


def main(argv) -> None:
    del argv
    jax.config.update("jax_threefry_partitionable", True)
    compile_cache.enable_compilation_cache(FLAGS.compilation_cache)
    config = FLAGS.config
    try:
        init_distributed()
        logging.set_verbosity(logging.INFO if parallel.is_main_process() else logging.WARNING)
        checkpoint.hide_orbax_info()
        if FLAGS.mode == "train":
            train.train(config, FLAGS.workdir)
        elif FLAGS.mode == "sample":
            sample(config, FLAGS.workdir)
        else:
            run_evals(config, FLAGS.workdir, FLAGS.eval_steps)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
