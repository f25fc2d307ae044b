"""Surviving interruptions: SIGTERM and exact resume, unreadable and half-written checkpoints, the
retention policy, NaN losses, save errors, and a workdir of another config. Runs go through
launch.py in subprocesses (see run_utils), as a user or a scheduler would start them."""

import glob
import json
import os
import re
import shutil

import numpy as np
import pytest
import run_utils

from consistency_jax.errors import ConfigError
from consistency_jax.jobs import train

# A short toy run of configs/toy_edm.py: checkpoints every 4 steps, the latest 2 kept and every
# multiple of 8 for good.
EDM = {"train.ckpt_every": 4, "train.ckpt_keep": 2, "train.ckpt_keep_every": 8}


def _steps(workdir: str) -> list[int]:
    """The steps of the finished checkpoints in `workdir`."""
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    return sorted(int(name) for name in names if name.isdigit())


def _assert_identical(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, f"differ: {different}"


@pytest.mark.parametrize("steps_per_dispatch,log_every", [(1, 10), pytest.param(4, 20, marks=pytest.mark.slow)])
def test_sigterm_then_rerun_is_bitwise_exact(tmp_path, steps_per_dispatch, log_every):
    """2K steps straight == about K steps, SIGTERM, the same command again (CT: target, RAdam);
    with several steps per dispatch the run stops at the end of one."""
    values = {"train.num_steps": 300, "train.log_every": log_every, "train.ckpt_every": 100,
              "train.steps_per_dispatch": steps_per_dispatch}
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    logs = [str(tmp_path / name) for name in ("straight.log", "stopped.log", "resumed.log")]
    first = run_utils.start(run_utils.launch_args("toy_ct", straight, values), logs[0])
    second = run_utils.start(run_utils.launch_args("toy_ct", stopped, values), logs[1])
    run_utils.terminate_when(second, lambda: len(run_utils.logged_steps(stopped)) >= 2)
    output = run_utils.finish(second, logs[1], expect=143)  # 128 + SIGTERM: not finished
    stop = int(re.search(r"Stopped at step (\d+) on request", output).group(1))
    assert 2 * log_every <= stop < 300 and stop % steps_per_dispatch == 0 and _steps(stopped)[-1] == stop
    assert not os.path.exists(os.path.join(stopped, "samples"))  # samples come at the end only
    run_utils.run(run_utils.launch_args("toy_ct", stopped, values), logs[2])
    run_utils.finish(first, logs[0])
    config = run_utils.config("toy_ct", values)
    _assert_identical(run_utils.restore_state(config, straight), run_utils.restore_state(config, stopped))
    assert run_utils.logged_steps(stopped)[300]["loss"] == run_utils.logged_steps(straight)[300]["loss"]


# Runs launch.py (argv[1:]) with a SIGTERM sent to itself as the run starts waiting for its final
# save: the signal must wait for the save, not kill the process.
_SIGTERM_IN_FINAL_SAVE = """
import os, runpy, signal, sys
from consistency_jax.training import checkpoint
finish = checkpoint.finish
def sigterm_then_finish(manager):
    os.kill(os.getpid(), signal.SIGTERM)
    finish(manager)
checkpoint.finish = sigterm_then_finish
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.mark.slow
def test_sigterm_during_the_final_save_waits_for_it(tmp_path):
    workdir = str(tmp_path / "run")
    args = run_utils.launch_args("toy_edm", workdir)
    output = run_utils.run(["-c", _SIGTERM_IN_FINAL_SAVE, *args], str(tmp_path / "a"), expect=143)
    assert "Stopped at step 8 on request (signal 15, exit status 143)" in output
    assert _steps(workdir) == [4, 8] and not os.path.exists(os.path.join(workdir, "samples"))
    run_utils.restore_state(run_utils.config("toy_edm"), workdir, step=8)  # whole
    output = run_utils.run(args, str(tmp_path / "b"))
    assert "Resumed from step 8" in output and os.listdir(os.path.join(workdir, "samples"))


def test_unreadable_newest_checkpoint_is_skipped(tmp_path):
    workdir, ckpts = str(tmp_path / "run"), str(tmp_path / "run" / "checkpoints")
    run_utils.run(run_utils.launch_args("toy_edm", workdir, EDM | {"train.num_steps": 16}), str(tmp_path / "a"))
    assert _steps(workdir) == [8, 12, 16]  # 4 fell out: neither among the latest 2 nor a multiple of 8
    config = run_utils.config("toy_edm", EDM)
    original = run_utils.restore_state(config, workdir, step=16)
    for path in glob.glob(os.path.join(ckpts, "16", "state", "**", "*"), recursive=True):
        if os.path.isfile(path):  # the disk garbled the newest checkpoint
            with open(path, "r+b") as f:
                f.write(b"\xff" * os.path.getsize(path))
    shutil.copytree(os.path.join(ckpts, "8"), os.path.join(ckpts, "20.orbax-checkpoint-tmp"))  # killed mid-save

    output = run_utils.run(
        run_utils.launch_args("toy_edm", workdir, EDM | {"train.num_steps": 20}), str(tmp_path / "b")
    )
    assert re.search(r"Checkpoint 16 in \S+ cannot be restored", output)
    assert "Resumed from step 12" in output
    # steps 13..16 trained again: one record and one TensorBoard value each, the retrained ones
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    assert [r["step"] for r in logged] == list(range(1, 21))
    scalars, _ = run_utils.tensorboard_events(workdir)  # fails on a second value at a step
    assert scalars["train/loss"] == {r["step"]: pytest.approx(r["loss"]) for r in logged}
    assert os.listdir(os.path.join(workdir, "checkpoints_unreadable")) == ["16"]  # kept to inspect
    assert _steps(workdir) == [8, 16, 20] and not os.path.exists(os.path.join(ckpts, "20.orbax-checkpoint-tmp"))
    _assert_identical(original, run_utils.restore_state(config, workdir, step=16))


def test_nan_loss_stops_naming_step_and_checkpoint(tmp_path):
    values = {"optim.lr": 1e30, "optim.warmup_steps": 0, "train.ckpt_every": 1}
    workdir = str(tmp_path / "stop")
    output = run_utils.run(run_utils.launch_args("toy_edm", workdir, values), str(tmp_path / "a"), expect=2)
    found = re.search(r"error: The loss or gradient became non-finite at step (\d+).*"
                      r"Last good checkpoint: step (\d+) in (\S+)\.", output)
    assert found, output[-3000:]
    bad, good = int(found.group(1)), int(found.group(2))
    assert good == bad - 1 and _steps(workdir)[-1] == good and "nan_policy=skip" in output
    skip = str(tmp_path / "skip")
    run_utils.run(run_utils.launch_args("toy_edm", skip, values | {"train.nan_policy": "skip"}), str(tmp_path / "b"))
    logged = run_utils.logged_steps(skip)
    assert logged[8]["skipped"] == 1 and sum(r["skipped"] for r in logged.values()) == 8 - good


# Runs launch.py (argv[1:]) in a process whose files may not grow past argv[0] bytes: writes fail
# with EFBIG, as on a full disk (SIGXFSZ ignored, so write() fails instead of killing it).
_SMALL_FILES = """
import resource, runpy, signal, sys
limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_failed_save_is_an_error(tmp_path):
    workdir = str(tmp_path / "run")
    args = run_utils.launch_args("toy_edm", workdir, {"network.mlp.hidden": 256})
    # No compilation cache: its entries would be cut short too.
    output = run_utils.run(
        ["-c", _SMALL_FILES, str(64 * 1024), *args], str(tmp_path / "log"), expect=2,
        JAX_COMPILATION_CACHE_DIR=None,
    )
    assert re.search(r"error: Writing the checkpoint of step 4 to \S+ failed: .*File too large.*"
                     r"disk has space", output), output[-3000:]
    assert _steps(workdir) == []


def test_a_crashed_start_does_not_block_the_corrected_command_and_changes_need_consent(tmp_path):
    """A config.json without a checkpoint (a start that crashed) gives way to a corrected config;
    once the run has a checkpoint, a changed seed is refused (config.json untouched) unless
    allow_config_change, which then rewrites config.json."""
    workdir = str(tmp_path)
    path = os.path.join(workdir, "config.json")
    train.write_config(run_utils.config("toy_edm"), workdir)
    corrected = run_utils.config("toy_edm", {"network.mlp.hidden": 16, "train.num_steps": 2,
                                             "train.ckpt_every": 2})
    train.train(corrected, workdir)
    assert _steps(workdir) == [2]
    saved = os.path.getmtime(path), os.path.getsize(path)
    corrected.seed, corrected.train.num_steps = 1, 4
    with pytest.raises(ConfigError, match=r"config\.seed \(0 there, 1 now\).*--allow_config_change"):
        train.train(corrected, workdir)
    assert (os.path.getmtime(path), os.path.getsize(path)) == saved and _steps(workdir) == [2]
    train.train(corrected, workdir, allow_config_change=True)
    assert _steps(workdir) == [2, 4]
    with open(path) as f:
        assert json.load(f)["seed"] == 1


def _flip_a_byte_of_the_largest_array_file(checkpoint_dir: str) -> None:
    data = glob.glob(os.path.join(checkpoint_dir, "state", "**", "d", "*"), recursive=True)
    largest = max(data, key=os.path.getsize)
    middle = os.path.getsize(largest) // 2
    with open(largest, "r+b") as f:
        f.seek(middle)
        byte = f.read(1)[0]
        f.seek(middle)
        f.write(bytes([byte ^ 0x10]))


def _move_the_data_position(checkpoint_dir: str) -> None:
    """Valid JSON, but a position the run never saved."""
    (path,) = glob.glob(os.path.join(checkpoint_dir, "data", "process_0-of-1.json"))
    with open(path) as f:
        position = json.load(f)
    with open(path, "w") as f:
        json.dump(position | {"next_index": position["next_index"] + 1}, f)


_CHECKSUM_MISMATCH = r"the data of 1 item \(%s\) does not match the checksums saved with it"
_ARRAY_ITEM = _CHECKSUM_MISMATCH % r"\.\S+"


@pytest.mark.parametrize("damage,named", [
    # Where the middle byte lands decides who notices: in a stored (incompressible) zstd block
    # orbax decodes the flipped value without complaint and the checksum catches it; in a
    # block header tensorstore fails to decode. Either way the run falls back.
    (_flip_a_byte_of_the_largest_array_file, rf"({_ARRAY_ITEM}|\w+(?:Error|Exception): [^\n]+)"),
    (_move_the_data_position, _CHECKSUM_MISMATCH % "data/process_0"),
])
def test_damaged_contents_of_the_newest_checkpoint_are_detected_and_fallen_back_from(tmp_path, damage, named):
    """A bit flip inside the newest checkpoint's array data, or a data position changed to other
    valid JSON (which only the checksum can notice), is detected: the run resumes from the
    checkpoint before, says why, and sets the damaged one aside."""
    workdir, ckpts = str(tmp_path / "run"), str(tmp_path / "run" / "checkpoints")
    run_utils.run(run_utils.launch_args("toy_edm", workdir), str(tmp_path / "a"))
    assert _steps(workdir) == [4, 8]
    damage(os.path.join(ckpts, "8"))
    output = run_utils.run(
        run_utils.launch_args("toy_edm", workdir, {"train.num_steps": 12}), str(tmp_path / "b")
    )
    assert re.search(rf"Checkpoint 8 in \S+ cannot be restored \({named}[^\n]*\); trying the one before", output), \
        output[-3000:]
    assert "Resumed from step 4" in output and "Moved the unreadable checkpoint 8" in output
    assert os.listdir(os.path.join(workdir, "checkpoints_unreadable")) == ["8"]
    assert _steps(workdir)[-1] == 12
