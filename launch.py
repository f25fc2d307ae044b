"""Entry point: python launch.py --config=configs/X.py --workdir=DIR [--mode=train|sample].

Any config key can be overridden: --config.optim.lr=2e-4.
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from consistency_jax import checkpoint, train
from consistency_jax.config_checks import ConfigError
from consistency_jax.data import DatasetUnavailableError, data_info
from consistency_jax.networks import build_network

config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory of the run: checkpoints, config, metrics, samples.")
flags.DEFINE_enum("mode", "train", ["train", "sample"], "train (resumes automatically) or sample.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS

# Errors that are the user's to fix: print the message alone, no traceback.
USER_ERRORS = (
    ConfigError,
    DatasetUnavailableError,
    train.TeacherNotFoundError,
    train.NonFiniteLossError,
    checkpoint.CheckpointNotFoundError,
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


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.INFO)
    logging.get_absl_handler().addFilter(lambda record: "orbax" not in record.pathname)
    jax.config.update("jax_threefry_partitionable", True)
    config = FLAGS.config
    try:
        if FLAGS.mode == "train":
            train.train(config, FLAGS.workdir)
        else:
            sample(config, FLAGS.workdir)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
