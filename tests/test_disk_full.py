"""A full disk at any phase: one message (exit status 2, no traceback), no partial file; and a
resumed run's metrics log keeps one record per step."""

import errno
import json
import os
import subprocess

import pytest
import run_utils

from consistency_jax.jobs import train
from consistency_jax.training import checkpoint, files
from consistency_jax.training.log import MetricsLog


class _FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes are written (some get through)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        if len(data) > self.room:
            self.f.write(data[: self.room])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _fill_disk_for(monkeypatch, suffix: str, room: int = 100) -> None:
    """Writes of files ending in `suffix` (through files.py) hit a full disk."""
    real_open = open

    def full_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return _FullDisk(f, room) if str(path).endswith(suffix) and "r" not in mode else f

    monkeypatch.setattr(files, "open", full_open, raising=False)


def _all_files(workdir: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(r, n), workdir) for r, _, ns in os.walk(workdir) for n in ns)


@pytest.mark.parametrize("suffix,what", [
    ("config.json.tmp", "the run's config"),
    (".npz.tmp", "samples"),
    (".png.tmp", "a sample plot"),
    ("metrics.jsonl", "the metrics log"),
])
def test_a_full_disk_in_each_phase_is_one_message_and_leaves_no_partial_file(tmp_path, monkeypatch, suffix, what):
    workdir = str(tmp_path / "run")
    _fill_disk_for(monkeypatch, suffix)
    config = run_utils.config("toy_edm", {"train.num_steps": 2, "train.ckpt_every": 2})
    with pytest.raises(files.WriteError, match=f"Writing {what} to .* failed: .*No space left on device.*"
                       "Free space on its disk"):
        train.train(config, workdir)
    left = _all_files(workdir)
    assert not [n for n in left if n.endswith(".tmp")] and ".lock" not in left, left
    if suffix.endswith(".tmp"):  # the file being written is absent, not partial
        assert not [n for n in left if n.endswith(suffix.removesuffix(".tmp"))], left


def test_closing_after_a_failed_save_adds_no_second_error():
    class Manager:
        directory = "run/checkpoints"

        def latest_step(self):
            return 4

        def wait_until_finished(self):
            raise ValueError("RESOURCE_EXHAUSTED: No space left on device [os_error_code='28']")

        def close(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(checkpoint.CheckpointSaveError, match=r"step 4 .* failed \(the disk is full\)"):
        checkpoint.finish(Manager())


def test_a_resumed_log_keeps_one_record_per_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in range(1, 9)] + ['{"step": 9, "lo']
    path.write_text("\n".join(lines))
    MetricsLog(str(tmp_path), 16, "stop", None, start=4)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3, 4]


def _mount_tmpfs(path: str, size: str) -> None:
    os.makedirs(path)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")


def test_a_full_tmpfs_first_at_a_save_then_at_the_config(tmp_path):
    """A real full disk (a 128 KiB tmpfs): the first checkpoint does not fit; a rerun while it is
    still full, with more steps (so a new config.json), stops at a write. One message each, no
    traceback, no partial file."""
    disk = str(tmp_path / "disk")
    _mount_tmpfs(disk, "128k")
    try:
        workdir = os.path.join(disk, "run")
        args = run_utils.launch_args("toy_edm", workdir, {"network.mlp.hidden": 128})
        output = run_utils.run(args, str(tmp_path / "a"), expect=2, JAX_COMPILATION_CACHE_DIR=None)
        assert "error: Writing the checkpoint of step 4" in output and "(the disk is full)" in output
        assert "Traceback" not in output and "Task exception" not in output, output[-3000:]
        more = run_utils.launch_args("toy_edm", workdir, {"network.mlp.hidden": 128, "train.num_steps": 12})
        output = run_utils.run(more, str(tmp_path / "b"), expect=2, JAX_COMPILATION_CACHE_DIR=None)
        assert "error: Writing " in output
        assert "No space left on device" in output or "(the disk is full)" in output
        assert "Traceback" not in output, output[-3000:]
        assert sorted(os.listdir(workdir)) == ["checkpoints", "config.json", "metrics.jsonl", "tensorboard"]
        # what the failed save freed may or may not hold the new config: either file, but whole
        with open(os.path.join(workdir, "config.json")) as f:
            assert json.load(f)["train"]["num_steps"] in (8, 12)
    finally:
        subprocess.run(["umount", disk], check=False)
