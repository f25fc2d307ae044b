"""The errors that are the user's to fix: launch.py and pipeline.py print the message alone, no
traceback, and exit with status 2."""

from consistency_jax.data import DatasetUnavailableError
from consistency_jax.errors import ConfigError
from consistency_jax.jobs.teacher import TeacherNotFoundError
from consistency_jax.networks.pretrained import WeightsUnavailableError
from consistency_jax.training import checkpoint, files, lock
from consistency_jax.training.log import NonFiniteLossError

USER_ERRORS = (
    ConfigError,
    DatasetUnavailableError,
    TeacherNotFoundError,
    NonFiniteLossError,
    checkpoint.CheckpointNotFoundError,
    checkpoint.CheckpointUnreadableError,
    checkpoint.CheckpointSaveError,
    WeightsUnavailableError,
    lock.WorkdirLockedError,
    files.WriteError,
)
