"""The workdir lock: a second run on a live run's workdir is refused naming the holder; a lock
left by a process that is gone is taken over; releasing removes the lock file."""

import errno
import json
import os
import socket

import pytest
import run_utils

from consistency_jax.training import lock


def test_a_second_lock_is_refused_naming_the_holder_and_release_removes_it(tmp_path):
    workdir = str(tmp_path / "run")
    fd = lock.acquire(workdir, "train")
    with pytest.raises(lock.WorkdirLockedError, match=f"host {socket.gethostname()}, pid {os.getpid()} \\(train"):
        lock.acquire(workdir, "eval")  # flock: a second open file is refused, even in this process
    lock.release(workdir, fd)
    assert os.listdir(workdir) == []
    lock.release(workdir, lock.acquire(workdir, "eval"))


def test_a_second_launch_on_a_live_run_is_refused(tmp_path):
    workdir = str(tmp_path / "run")
    values = {"train.num_steps": 100_000, "train.ckpt_every": 100_000}
    first = run_utils.start(run_utils.launch_args("toy_edm", workdir, values), str(tmp_path / "first"))
    try:
        run_utils.wait_until(first, lambda: len(run_utils.logged_steps(workdir)) >= 1)
        second = run_utils.run(
            run_utils.launch_args("toy_edm", workdir, values), str(tmp_path / "second"), expect=2
        )
        assert f"is in use by another run: host {socket.gethostname()}, pid {first.pid} (train" in second
        assert "Traceback" not in second
    finally:
        run_utils.terminate_when(first, lambda: True)
        run_utils.finish(first, str(tmp_path / "first"), expect=143)
    assert not os.path.exists(os.path.join(workdir, lock.LOCK_NAME))


def test_a_stale_lock_is_taken_over(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    gone = {"host": "gone-host", "pid": 999_999, "job": "train", "since": "yesterday"}
    (workdir / lock.LOCK_NAME).write_text(json.dumps(gone))  # its holder was killed: no flock
    output = run_utils.run(run_utils.launch_args("toy_edm", str(workdir)), str(tmp_path / "log"))
    assert "left by host gone-host, pid 999999 (train, since yesterday)" in output
    assert not (workdir / lock.LOCK_NAME).exists() and (workdir / "samples").is_dir()


def test_a_file_system_without_flock_is_a_user_error(tmp_path, monkeypatch):
    def no_flock(fd, operation):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(lock.fcntl, "flock", no_flock)
    with pytest.raises(lock.WorkdirLockedError, match="its file system refuses flock .*Lustre: -o flock"):
        lock.acquire(str(tmp_path / "run"), "train")
    assert os.listdir(tmp_path / "run") == []
