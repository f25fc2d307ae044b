"""An exclusive lock on a workdir, held for the life of a run (train, sample, eval).

The lock is WORKDIR/.lock, locked with flock(LOCK_EX | LOCK_NB) and holding the holder's host,
pid and job. flock rather than a file created with O_EXCL plus a check that its pid still runs:
the kernel drops a flock when its holder dies, however it dies (SIGKILL, out of memory), so a
stale lock needs no guess about liveness (a pid may have been reused, and a pid on another host
cannot be checked at all). A lock file left by a dead holder is simply locked again; that is
the takeover, and its former contents are logged. Releasing removes the file while still
holding it; a process that opened the file just before that sees, once it holds the lock, that
the path now names another file (or none), and tries again.

A run of several processes takes one lock, in process 0; the others learn whether it got it
and stop with it. What this does and does not protect on network file systems:
docs/reliability.md.
"""

import contextlib
import fcntl
import json
import os
import socket
import time
from typing import Self

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from consistency_jax.training import files, parallel

LOCK_NAME = ".lock"


class WorkdirLockedError(RuntimeError):
    """Another live process holds the workdir's lock."""


def _describe(holder: str) -> str:
    """'host H, pid P (train, since T)' from a lock file's contents, or the contents as they are."""
    try:
        h = json.loads(holder)
        return f"host {h['host']}, pid {h['pid']} ({h['job']}, since {h['since']})"
    except (ValueError, KeyError, TypeError):
        return repr(holder[:200]) if holder else "a process that has not written its name yet"


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 4096).decode(errors="replace").strip()


def _names_file(fd: int, path: str) -> bool:
    """Whether `path` still names the file open as `fd` (not removed or replaced since)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (os.fstat(fd).st_dev, os.fstat(fd).st_ino)


def acquire(workdir: str, job: str) -> int:
    """Lock `workdir` (creating it) and write this process's name into the lock; the lock's fd.
    WorkdirLockedError, naming the holder, if a live process holds it."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, LOCK_NAME)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise WorkdirLockedError(
                f"The workdir {workdir} is in use by another run: {holder} holds its lock "
                f"({path}). Wait for that run to end or stop it, or use another --workdir. If that "
                f"process is gone but its host cannot release the lock (a crashed node on a "
                f"network file system), delete {path}."
            ) from None
        except OSError as e:  # ENOSYS, ENOLCK: a file system without flock (Lustre without -o flock)
            os.close(fd)
            with contextlib.suppress(OSError):
                os.remove(path)
            raise WorkdirLockedError(
                f"The workdir {workdir} cannot be locked: its file system refuses flock ({e}). Mount "
                "it with flock support (Lustre: -o flock) or use a workdir on a file system that "
                "has it (docs/reliability.md)."
            ) from None
        if _names_file(fd, path):
            break
        os.close(fd)  # the holder removed it between our open and our lock: open it anew
    previous = _read(fd)
    if previous:
        logging.warning("Took over the lock of %s left by %s, which is no longer running.",
                        workdir, _describe(previous))
    me = {"host": socket.gethostname(), "pid": os.getpid(), "job": job,
          "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
    except OSError:
        release(workdir, fd)
        raise
    return fd


def release(workdir: str, fd: int) -> None:
    """Remove the lock file, then drop the lock (in this order: see the module docstring)."""
    path = os.path.join(workdir, LOCK_NAME)
    try:
        if _names_file(fd, path):
            os.remove(path)
    finally:
        os.close(fd)


class WorkdirLock:
    """`with WorkdirLock(workdir, job):` holds the workdir's lock (process 0) for the block;
    every process raises WorkdirLockedError if process 0 could not take it."""

    def __init__(self, workdir: str, job: str):
        self.workdir, self.job = workdir, job
        self._fd: int | None = None

    def __enter__(self) -> Self:
        error = None
        if parallel.is_main_process():
            try:
                self._fd = acquire(self.workdir, self.job)
            except WorkdirLockedError as e:
                error = e
            except OSError as e:  # a full or read-only disk
                error = files.write_error("the workdir's lock", os.path.join(self.workdir, LOCK_NAME), e)
        if jax.process_count() > 1:
            locked = multihost_utils.process_allgather(np.asarray(error is None))
            if not np.all(locked) and error is None:
                if self._fd is not None:
                    release(self.workdir, self._fd)
                raise WorkdirLockedError(
                    f"Process 0 could not lock the workdir {self.workdir}; its message names the "
                    "run holding it."
                )
        if error is not None:
            raise error
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            release(self.workdir, self._fd)
            self._fd = None
