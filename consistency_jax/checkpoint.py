"""Checkpoints of a run: the train state and the data iterator, through orbax, in WORKDIR/checkpoints."""

import os

import grain
import jax
import orbax.checkpoint as ocp

from consistency_jax.train_state import TrainState


class CheckpointNotFoundError(FileNotFoundError):
    """A run directory that should hold a checkpoint holds none."""


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
    """An asynchronous manager keeping the latest `max_to_keep` checkpoints of `workdir`."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def save(
    manager: ocp.CheckpointManager, state: TrainState, data_iter: grain.DatasetIterator | None
) -> None:
    """Start an asynchronous save of `state` (and the iterator position) at state.step."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    manager.save(int(state.step), args=ocp.args.Composite(**items), force=True)


def restore(
    manager: ocp.CheckpointManager,
    abstract_state: TrainState,
    data_iter: grain.DatasetIterator | None = None,
    step: int | None = None,
) -> TrainState:
    """The state saved at `step` (default: latest) shaped like `abstract_state`; moves `data_iter` there."""
    step = manager.latest_step() if step is None else step
    if step is None:
        raise CheckpointNotFoundError(f"No checkpoint in {manager.directory}.")
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    return manager.restore(step, args=ocp.args.Composite(**items)).state


def abstract(state_fn, *args) -> TrainState:
    """The shapes and dtypes of `state_fn(*args)`, computed without allocating it."""
    return jax.eval_shape(state_fn, *args)
