"""Checkpoints of a run: the train state and the data iterator, through orbax, in WORKDIR/checkpoints.

Saves are asynchronous and made by every process (orbax writes each process's shards); the
latest `keep` checkpoints are kept, and every multiple of `keep_every` for good. Restoring takes
a target whose leaves carry the current mesh's shardings, so a run saved on 8 devices resumes
on 4 or 1. An unreadable newest checkpoint is skipped in favour of the one before (a save
killed halfway never becomes a step: orbax renames its temporary directory only once complete).
Each checkpoint carries a checksum of every array of the state (training/checksum.py), checked
when it is restored: a mismatch makes it unreadable, like any other damage.
"""

import errno
import hashlib
import json
import os
import shutil
import signal
import sys
import threading
from types import FrameType
from typing import Self

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers as policies

from consistency_jax.errors import ConfigError
from consistency_jax.training import checksum, parallel
from consistency_jax.training.state import TrainState


def _orbax_noise(record) -> bool:
    """orbax's own log lines, and asyncio's tracebacks of orbax's write tasks that failed along
    with a save (the save's failure is reported once, as CheckpointSaveError)."""
    first_line = str(record.msg).split("\n", 1)[0]  # Task, Future or _GatheringFuture
    return "orbax" in record.pathname or first_line.endswith("exception was never retrieved")


def _closed_loop(error: BaseException | None) -> bool:
    return isinstance(error, RuntimeError) and str(error) == "Event loop is closed"


def hide_orbax_info() -> None:
    """Keep orbax's per-save lines out of absl's log (they bury the training log), and the
    'Event loop is closed' errors that tensorstore's callbacks report (as unraisable) when a failed save's
    event loop has been shut down (the failure itself is reported as CheckpointSaveError)."""
    logging.get_absl_handler().addFilter(lambda record: not _orbax_noise(record))
    unraisable = sys.unraisablehook
    sys.unraisablehook = lambda args: None if _closed_loop(args.exc_value) else unraisable(args)


class CheckpointNotFoundError(FileNotFoundError):
    """A run directory that should hold a checkpoint holds none."""


class CheckpointUnreadableError(RuntimeError):
    """Every checkpoint of a run failed to restore."""


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (disk full, no permission, ...)."""


class CheckpointCorruptError(RuntimeError):
    """A checkpoint's arrays do not match the checksums saved with them."""


CHECKSUMS = "checksums"  # the checkpoint item holding them


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def unreadable_dir(workdir: str) -> str:
    """Where checkpoints that failed to restore are moved, kept for inspection."""
    return os.path.join(os.path.abspath(workdir), "checkpoints_unreadable")


def make_manager(workdir: str, keep: int | None = None, keep_every: int = 0) -> ocp.CheckpointManager:
    """The checkpoint manager of `workdir`.

    With `keep` (a training run): writes, keeping the latest `keep` checkpoints plus every one
    at a multiple of `keep_every` (0: none), and clears temporary directories of saves killed
    halfway. Without (sampling, evaluation, a teacher): read-only, so it can read a run that
    is still training.
    """
    if keep is None:
        options = ocp.CheckpointManagerOptions(read_only=True)
        return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)
    if keep < 1 or keep_every < 0:
        raise ConfigError(
            f"config.train.ckpt_keep={keep} must be >= 1 and ckpt_keep_every={keep_every} >= 0."
        )
    kept = [policies.LatestN(n=keep)] + ([policies.EveryNSteps(keep_every)] if keep_every else [])
    options = ocp.CheckpointManagerOptions(
        create=True,
        cleanup_tmp_directories=True,
        preservation_policy=policies.AnyPreservationPolicy(kept),
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


def _save_failed(manager: ocp.CheckpointManager, step: int | None, error: Exception) -> CheckpointSaveError:
    full = "os_error_code='28'" in str(error) or getattr(error, "errno", None) == errno.ENOSPC
    return CheckpointSaveError(
        f"Writing the checkpoint of step {step} to {manager.directory} failed"
        f"{' (the disk is full)' if full else ''}: {error}. Check that the disk has space and the "
        "directory is writable, then rerun the same command: it resumes from the last complete "
        "checkpoint."
    )


def _wait(manager: ocp.CheckpointManager) -> None:
    """Wait for the asynchronous save in flight, if any; its failure raises CheckpointSaveError."""
    pending = manager.latest_step()  # a save in flight is already the latest step
    try:
        manager.wait_until_finished()
    except Exception as e:  # orbax and tensorstore report OS errors under many types
        raise _save_failed(manager, pending, e) from e


def save(
    manager: ocp.CheckpointManager, state: TrainState, data_iter: grain.DatasetIterator | None
) -> None:
    """Start an asynchronous save of `state` (and the iterator position) at state.step.

    A failure of this save, or of the previous one, raises CheckpointSaveError naming its step.
    """
    _wait(manager)
    step = int(state.step)
    sums = checksum.checksums(state) | (_data_checksums(data_iter) if data_iter is not None else {})
    items = {"state": ocp.args.StandardSave(state), CHECKSUMS: ocp.args.JsonSave(sums)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointSave(data_iter)
    try:
        manager.save(step, args=ocp.args.Composite(**items), force=True)
    except Exception as e:  # as in _wait
        raise _save_failed(manager, step, e) from e


def check(manager: ocp.CheckpointManager) -> None:
    """Raise CheckpointSaveError if an asynchronous save has failed since the last call (cheap:
    called at every step, so a failure is reported as soon as it is known). While a save is in
    flight it does nothing (orbax's check would wait for the save's metadata)."""
    if manager.is_saving_in_progress():
        return
    try:
        manager.check_for_errors()
    except Exception as e:  # as in _wait
        raise _save_failed(manager, manager.latest_step(), e) from e


def finish(manager: ocp.CheckpointManager) -> None:
    """Wait for pending saves and close `manager`; a failed save, or a failure to close, raises
    CheckpointSaveError (once: closing after a failed save adds no second error)."""
    try:
        _wait(manager)
    except CheckpointSaveError:
        try:
            manager.close()
        except Exception as e:  # the same disk failing again
            logging.warning("Closing the checkpoint manager after the failed save also failed: %s", e)
        raise
    try:
        manager.close()
    except Exception as e:  # as in _wait
        raise _save_failed(manager, manager.latest_step(), e) from e


def _data_checksums(data_iter: grain.DatasetIterator) -> dict[str, str]:
    """{'data/process_<i>': a hash of process i's data iterator position}, for every process."""
    position = json.dumps(data_iter.get_state(), sort_keys=True, default=str).encode()
    words = np.frombuffer(hashlib.sha256(position).digest()[:8], np.uint32)
    every = np.asarray(multihost_utils.process_allgather(words)).reshape(-1, 2)
    return {f"data/process_{i}": "".join(f"{int(w):08x}" for w in row) for i, row in enumerate(every)}


def _restore_step(manager, step: int, abstract_state, data_iter) -> TrainState:
    """The state at `step`, its checksums verified (checkpoints written before checksums were
    saved are restored unverified, with a warning)."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    verified = os.path.isdir(os.path.join(manager.directory, str(step), CHECKSUMS))
    if verified:
        items[CHECKSUMS] = ocp.args.JsonRestore()
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    if not verified:
        logging.warning("Checkpoint %d in %s has no checksums (an older save): not verified.", step, manager.directory)
        return restored.state
    saved = restored[CHECKSUMS]
    now = checksum.checksums(restored.state)
    if data_iter is not None:
        now |= _data_checksums(data_iter)
    else:  # restored without the data iterator (sampling, eval, a teacher)
        saved = {k: v for k, v in saved.items() if not k.startswith("data/")}
    bad = checksum.mismatches(saved, now)
    if bad:
        named = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise CheckpointCorruptError(
            f"the data of {len(bad)} item{'s' if len(bad) > 1 else ''} ({named}) does not match the "
            "checksums saved with it: the files were damaged or changed on disk"
        )
    return restored.state


def _everywhere(ok: bool) -> bool:
    """Whether `ok` holds on every process (they must agree on the checkpoint they resume)."""
    return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


def require_steps(manager: ocp.CheckpointManager, steps: list[int]) -> None:
    """Fail, naming the kept steps, unless every one of `steps` has a checkpoint."""
    kept = sorted(manager.all_steps())
    missing = [s for s in steps if s not in kept]
    if missing:
        raise CheckpointNotFoundError(
            f"No checkpoint at steps {missing} in {manager.directory}; it keeps {kept}."
        )


def _reason(error: Exception) -> str:
    """One line saying why a restore failed: ours as written; another library's first line, named."""
    if isinstance(error, CheckpointCorruptError):
        return str(error)
    first = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first[:200]}"


def restore(
    manager: ocp.CheckpointManager,
    abstract_state: TrainState,
    data_iter: grain.DatasetIterator | None = None,
    step: int | None = None,
) -> TrainState:
    """The state saved at `step` (default: the newest readable one) onto `abstract_state`'s shardings.

    `abstract_state` holds jax.ShapeDtypeStruct leaves with shardings (train.abstract_state);
    `data_iter`, if given, is moved to the saved position. Without `step`, a checkpoint that
    fails to restore is skipped, with a warning, in favour of the one before.
    """
    if step is not None:
        require_steps(manager, [step])
    steps = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
    if not steps:
        raise CheckpointNotFoundError(f"No checkpoint in {manager.directory}.")
    errors = {}
    for s in steps:
        try:
            state = _restore_step(manager, s, abstract_state, data_iter)
        except Exception as e:  # corruption fails in many ways, in orbax or tensorstore
            errors[s] = e
        if _everywhere(s not in errors):
            return state
        logging.warning(
            "Checkpoint %d in %s cannot be restored (%s); trying the one before.",
            s, manager.directory, _reason(errors[s]) if s in errors else "failed on another process",
        )
    newest = steps[0]
    why = _reason(errors[newest]) if newest in errors else "an error on another process"
    raise CheckpointUnreadableError(
        f"No checkpoint in {manager.directory} can be restored (steps {steps}); the newest, "
        f"{newest}, failed with {why}. If the config changed since the run "
        "started, use the original config; otherwise remove the directory to start afresh."
    ) from errors.get(newest)


def set_aside_newer(manager: ocp.CheckpointManager, workdir: str, step: int) -> None:
    """Move checkpoints after `step` (skipped as unreadable) out of the way, into unreadable_dir."""
    newer = [s for s in manager.all_steps() if s > step]
    if newer and parallel.is_main_process():
        os.makedirs(unreadable_dir(workdir), exist_ok=True)
        for s in newer:
            target = os.path.join(unreadable_dir(workdir), str(s))
            shutil.rmtree(target, ignore_errors=True)
            os.rename(os.path.join(manager.directory, str(s)), target)
            logging.warning("Moved the unreadable checkpoint %d to %s.", s, target)
    if newer:
        parallel.sync("checkpoint.set_aside_newer")
        manager.reload()


class Preempted(Exception):
    """The run stopped on a signal once its checkpoint was saved; rerunning resumes it.

    `exit_status` is the shell's convention for a process ended by signal `signum`, 128 +
    signum (143 for SIGTERM): non-zero, so a scheduler does not take the run for finished, and
    distinct from 1 (a crash) and 2 (a user error).
    """

    def __init__(self, step: int, signum: int = signal.SIGTERM):
        self.step, self.signum = step, signum
        self.exit_status = 128 + signum
        super().__init__(
            f"Stopped at step {step} on request (signal {signum}, exit status {self.exit_status}); "
            "rerun the same command to resume."
        )

    def __reduce__(self):  # rebuilt from its arguments when it crosses a process boundary
        return Preempted, (self.step, self.signum)


class Preemption:
    """Whether the run was told to stop (SIGTERM), at a step every process agrees on.

    With jax.distributed initialised, jax's preemption service catches SIGTERM on any process
    and picks the sync step; otherwise a SIGTERM handler, installed for the `with` block, sets a
    flag read at the next step. `reached(step)` must be called at every step. A signal while
    the block waits for the final save only sets `signum`: the save completes first.
    """

    def __init__(self):
        self._signalled = False
        self._previous = None
        self.signum: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        del frame
        logging.warning("Got signal %d: saving a checkpoint at the next step, then stopping.", signum)
        self._signalled = True
        self.signum = signum

    def __enter__(self) -> Self:
        if not jax.distributed.is_initialized() and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def reached(self, step: int) -> bool:
        if jax.distributed.is_initialized():
            return multihost_utils.reached_preemption_sync_point(step)
        return self._signalled
