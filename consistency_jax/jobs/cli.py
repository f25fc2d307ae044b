"""Entry point: python launch.py --config=configs/X.py --workdir=DIR [--mode=train|sample|eval|edit]
(also `python -m consistency_jax` and the `consistency-jax` command of `pip install -e .`).

Any config key can be overridden: --config.optim.lr=2e-4.
Several processes (one per host): jax.distributed is initialised from --coordinator,
--num_processes and --process_id (or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
JAX_PROCESS_ID), or detected under SLURM, Open MPI and on Cloud TPU VMs. Every process runs
the same command; process 0 alone logs and writes files other than checkpoints.

Exit status: 0 done; 2 a user error (the message alone, no traceback); 128 + signal number
(143 for SIGTERM) stopped on request after saving a checkpoint, so rerun to resume; 1 a crash.
"""

import ast
import contextlib
import importlib.util
import os
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from consistency_jax.config import checks, overrides, schema
from consistency_jax.data import data_info, num_labels
from consistency_jax.data.latents import latent_info
from consistency_jax.errors import ConfigError
from consistency_jax.evaluation import run as evaluate
from consistency_jax.evaluation.samples import SAMPLE_SECTIONS, overrides_tag, sampler_names, write_samples
from consistency_jax.jobs import edit, latents, train
from consistency_jax.jobs.user_errors import USER_ERRORS
from consistency_jax.networks import build_network
from consistency_jax.training import checkpoint, compile_cache, lock, parallel
from consistency_jax.training.log import TB_DIR, tensorboard
from consistency_jax.training.state import abstract_state

config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory of the run: checkpoints, config, metrics, samples.")
flags.DEFINE_enum(
    "mode", "train", ["train", "sample", "eval", "edit"],
    "train (resumes automatically), sample (from the latest checkpoint), eval (FID/IS/KID), or edit "
    "(zero-shot editing, config.edit).",
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
flags.DEFINE_integer(
    "sample_seed", None,
    "--mode=sample: draw with this seed into samples/<sampler>_seed<seed>.npz, beside the files "
    "already there (unset: config.seed, into samples/<sampler>.npz as training writes them, or, "
    "under other seed, model or sample keys than the run's, into files tagged with those keys).",
)
flags.DEFINE_bool(
    "allow_config_change", False,
    "--mode=train: resume a run although keys that change what it computes (seed, data, model, "
    "network, objective) differ from its config.json, which is then rewritten.",
)
compile_cache.define_flag()
flags.declare_key_flag("compilation_cache")  # listed in --help with this module's flags
FLAGS = flags.FLAGS
# The shipped configs, in the source checkout this package is part of (the library never imports them).
CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")
HELP_ARGS = ("-h", "--help", "-?", "--helpshort", "--helpfull")



def config_file_of(argv: list[str]):
    """The config --config names, for the keys an override may set (the schema's if it cannot
    be loaded)."""
    for i, arg in enumerate(argv):
        path = arg.split("=", 1)[1] if arg.startswith("--config=") else None
        path = argv[i + 1] if arg == "--config" and i + 1 < len(argv) else path
        if path:
            try:
                spec = importlib.util.spec_from_file_location("config_file", path.split(":")[0])
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module.get_config()
            except Exception:  # the flag parser reports a config file that cannot be loaded
                break
    return schema.get_config()


def config_summaries(directory: str) -> list[tuple[str, str]]:
    """(path, the first line of its docstring) of each config file in `directory` (read, not
    imported), the shared modules without get_config left out."""
    found = []
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        path = os.path.join(directory, name)
        if not name.endswith(".py") or name.startswith("_"):
            continue
        with open(path) as f:
            tree = ast.parse(f.read())
        if any(isinstance(n, ast.FunctionDef) and n.name == "get_config" for n in tree.body):
            doc = ast.get_docstring(tree) or ""
            found.append((os.path.relpath(path), doc.split("\n")[0]))
    return found


def help_text() -> str:
    """--help: the usage, the shipped configs with one line each, where keys are documented, the flags."""
    configs = config_summaries(CONFIGS_DIR)
    width = max((len(p) for p, _ in configs), default=0)
    listing = "\n".join(f"  {p:<{width}}  {doc}" for p, doc in configs) or f"  (no configs/ folder at {CONFIGS_DIR})"
    return (
        f"{__doc__.strip()}\n\nShipped configs (--config=PATH):\n{listing}\n\nEvery config key, its "
        f"meaning and default: {os.path.relpath(schema.__file__)} (override any: --config.KEY=VALUE)."
        f"\n\nFlags:\n{FLAGS.module_help(sys.modules[__name__])}\n"
    )


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing; a bad flag, a misspelt --config.KEY or a value of the wrong type ends
    with one paragraph naming it (and the nearest keys), exit status 2, no traceback. --help
    prints `help_text` (exit status 0)."""
    if any(a in HELP_ARGS for a in argv[1:]):
        print(help_text())
        sys.exit(0)
    try:
        argv = FLAGS(argv)
    except (flags.Error, AttributeError, KeyError) as e:
        if not any(a.startswith(overrides.PREFIX) for a in argv) and not isinstance(e, flags.Error):
            raise
        message = overrides.override_error(argv, config_file_of(argv), e)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    missing = [name for name in ("config", "workdir") if FLAGS[name].value is None]
    if missing:
        print(f"error: {' and '.join('--' + m for m in missing)} must be given (--help lists the "
              "shipped configs).", file=sys.stderr)
        sys.exit(2)
    try:
        FLAGS.config.get("seed")  # config_flags defers a config file's load error to first use
    except OSError as e:
        reason = str(e).strip().splitlines()[-1].strip()
        print(f"error: --config: the config file cannot be loaded ({reason}). The shipped configs "
              "are configs/*.py.", file=sys.stderr)
        sys.exit(2)
    return argv


def sample(config, workdir: str, seed: int | None = None) -> list[str]:
    """Write every configured sampler's samples from the run's latest checkpoint (drawn with
    `seed` where given), their grids also to TensorBoard; their paths. Samples drawn with a seed,
    model or sample key other than the run's config.json's go to files tagged with them
    (`overrides_tag`: samples/<sampler>_seed7.npz), never over the run's own."""
    checks.validate(config)
    info = data_info(config.data)
    checks.check_labels_fit(config, num_labels(config.data, info))
    ae = latents.load_autoencoder(config)
    info = latent_info(info, ae, config.data.name)  # what the network sees
    model = build_network(config.network, num_labels(config.data, info))
    manager = checkpoint.make_manager(workdir)
    try:
        state = checkpoint.restore(manager, abstract_state(config, model, info))
    finally:
        manager.close()
    if seed is not None:
        config = config.copy_and_resolve_references()
        config.seed = seed
    drawn_under = evaluate.run_overrides(config, workdir, SAMPLE_SECTIONS)
    drawn_under |= {"seed": seed} if seed is not None else {}
    if drawn_under:
        logging.info("sampling under settings other than the run's config.json, %s: beside its samples", drawn_under)
    tag = overrides_tag(drawn_under)
    paths = write_samples(config, workdir, model, state.ema_params, info, tag=tag, autoencoder=ae)
    board = tensorboard(workdir)
    train.log_samples(board, {name + tag: path for name, path in paths.items()}, int(state.step))
    if board is not None:
        board.close()
    return list(paths.values())


def check_sample_seed(seed: int | None, mode: str) -> None:
    """--sample_seed: a seed >= 0, for --mode=sample only."""
    if seed is not None and (mode != "sample" or seed < 0):
        raise ConfigError(
            f"--sample_seed={seed} with --mode={mode}: it takes a seed >= 0 and is for --mode=sample "
            "(training and eval draw with config.seed: set --config.seed)."
        )


def run_evals(config, workdir: str, spec: str) -> list[str]:
    """Evaluate each checkpoint --eval_steps names; with several, log a table of their Frechet
    distances. The files written."""
    checks.validate(config)
    steps = evaluate.steps_to_evaluate(workdir, spec)
    ae = latents.load_autoencoder(config)
    rows = [evaluate.evaluate(config, workdir, step, ae) for step in steps]
    if len(rows) > 1:
        for r in rows:
            key = evaluate.frechet_key(r["feature_net"])
            figures = "  ".join(f"{name} {v[key]:.4g}" for name, v in r["samplers"].items())
            logging.info("step %d: %s %s", r["step"], key, figures)
    results = [os.path.join(evaluate.eval_dir(workdir, step), "results.json") for step in steps]
    return [*results, os.path.join(workdir, evaluate.EVALS_FILE)]


def trained(config, workdir: str, step: int) -> list[str]:
    """What a finished training run holds: its checkpoints, logs and final samples."""
    names = [os.path.join(workdir, "samples", f"{n}.npz") for n in sampler_names(config)]
    logs = [p for p in (os.path.join(workdir, n) for n in ("metrics.jsonl", TB_DIR)) if os.path.exists(p)]
    return [f"{checkpoint.checkpoint_dir(workdir)} (step {step})", *logs, *names]


def init_distributed() -> None:
    """Join the other processes of the run, if there are any (before any other use of jax)."""
    args = parallel.distributed_args(FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id)
    if args is None:
        return
    # Collectives between processes on the CPU backend (without them: "Multiprocess computations
    # aren't implemented on the CPU backend"); GPU and TPU backends have their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**args)


def locked(workdir: str, job: str) -> contextlib.AbstractContextManager:
    """The workdir's lock for a sampling or eval job (train takes its own); none for a workdir
    that does not exist, which the job reports as holding no checkpoint."""
    return lock.WorkdirLock(workdir, job) if os.path.isdir(workdir) else contextlib.nullcontext()


def check_backend() -> None:
    """Start JAX's backend; JAX_PLATFORMS naming one this machine lacks is a user error."""
    try:
        jax.devices()
    except (RuntimeError, AssertionError) as e:  # jax asserts where no platform it names loads
        reason = f" ({str(e).splitlines()[0]})" if str(e).strip() else ""
        raise ConfigError(
            f"JAX cannot start its backend{reason}. Check JAX_PLATFORMS "
            f"(now {os.environ.get('JAX_PLATFORMS', 'unset')!r}) and that the matching jax "
            "package (jax[cuda12], jax[tpu]) is installed, or unset JAX_PLATFORMS to use the CPU."
        ) from None


def main(argv) -> None:
    del argv
    jax.config.update("jax_threefry_partitionable", True)
    compile_cache.enable_compilation_cache(FLAGS.compilation_cache)
    config = FLAGS.config
    try:
        check_sample_seed(FLAGS.sample_seed, FLAGS.mode)
        checks.check_workdir(FLAGS.workdir)
        init_distributed()
        check_backend()
        logging.set_verbosity(logging.INFO if parallel.is_main_process() else logging.WARNING)
        checkpoint.hide_orbax_info()
        if FLAGS.mode == "train":
            state = train.train(config, FLAGS.workdir, FLAGS.allow_config_change)
            wrote = trained(config, FLAGS.workdir, int(state.step))
        elif FLAGS.mode == "sample":
            with locked(FLAGS.workdir, "sample"):
                wrote = sample(config, FLAGS.workdir, FLAGS.sample_seed)
        elif FLAGS.mode == "edit":
            with locked(FLAGS.workdir, "edit"):
                wrote = [edit.edit_run(config, FLAGS.workdir)]
        else:
            with locked(FLAGS.workdir, "eval"):
                wrote = run_evals(config, FLAGS.workdir, FLAGS.eval_steps)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except checkpoint.Preempted as e:
        logging.warning("%s", e)
        sys.exit(e.exit_status)
    if parallel.is_main_process():
        print(f"wrote: {', '.join(wrote)}")


def run() -> None:
    """The command line: launch.py, python -m consistency_jax, consistency-jax."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
