"""Two processes on 127.0.0.1 (jax.distributed, gloo CPU collectives), one CPU device each, run
launch.py as on two hosts: train, save, stop (SIGTERM to one process), resume, and match a
single-process run of the same global batches."""

import os
import re
import subprocess

import numpy as np
import pytest
import run_utils

NUM_PROCESSES = 2


def _start_processes(name: str, workdir: str, values: dict, logs: str) -> list[subprocess.Popen]:
    coordinator = f"--coordinator=127.0.0.1:{run_utils.free_port()}"
    return [
        run_utils.start(
            run_utils.launch_args(
                name, workdir, values, coordinator, f"--num_processes={NUM_PROCESSES}", f"--process_id={i}"
            ),
            f"{logs}.{i}",
        )
        for i in range(NUM_PROCESSES)
    ]


def _finish_processes(procs: list[subprocess.Popen], logs: str, expect: int = 0) -> list[str]:
    return [run_utils.finish(p, f"{logs}.{i}", expect) for i, p in enumerate(procs)]


def _losses(workdir: str) -> tuple[list[int], np.ndarray]:
    logged = run_utils.logged_steps(workdir)
    return sorted(logged), np.array([logged[s]["loss"] for s in sorted(logged)])


def _assert_matches_one_process(name: str, values: dict, workdir: str, single: str) -> None:
    """Same losses at every step and same final state as the one-process run, to float tolerance
    (the gradient sums are split over two devices there, over one here)."""
    steps, losses = _losses(workdir)
    single_steps, single_losses = _losses(single)
    assert steps == single_steps == list(range(1, values["train.num_steps"] + 1))
    np.testing.assert_allclose(losses, single_losses, rtol=1e-5)
    config = run_utils.config(name, values)
    two, one = run_utils.restore_state(config, workdir), run_utils.restore_state(config, single)
    assert run_utils.max_difference(two, one) < 1e-5


def _stop_and_resume(name: str, values: dict, tmp_path, logged_before_stop: int) -> tuple[int, list[str]]:
    """Two processes train until SIGTERM reaches process 1 (after `logged_before_stop` steps), then
    resume for 3 more steps while one process runs those steps from scratch; the stop step and
    the second run's outputs. Both runs must match (_assert_matches_one_process)."""
    workdir, single, logs = str(tmp_path / "two"), str(tmp_path / "one"), str(tmp_path / "log")
    procs = _start_processes(name, workdir, values | {"train.num_steps": 100_000}, f"{logs}.first")
    run_utils.terminate_when(procs[1], lambda: len(run_utils.logged_steps(workdir)) >= logged_before_stop)
    outputs = _finish_processes(procs, f"{logs}.first", expect=143)
    # A notice to one process: all agree on a step, save it, and exit with 128 + SIGTERM.
    stops = {int(re.search(r"Stopped at step (\d+) on request", out).group(1)) for out in outputs}
    assert len(stops) == 1
    stop = stops.pop()
    assert os.path.isdir(os.path.join(workdir, "checkpoints", str(stop)))

    values = values | {"train.num_steps": stop + 3}
    reference = run_utils.start(run_utils.launch_args(name, single, values), f"{logs}.single")
    outputs = _finish_processes(_start_processes(name, workdir, values, f"{logs}.second"), f"{logs}.second")
    run_utils.finish(reference, f"{logs}.single")
    assert f"Resumed from step {stop}" in outputs[0]
    _assert_matches_one_process(name, values, workdir, single)
    return stop, outputs


def test_toy_on_two_processes(tmp_path):
    _, outputs = _stop_and_resume("toy_edm", {}, tmp_path, logged_before_stop=3)
    assert not re.search(r"step \d+/\d+ loss", outputs[1])  # process 1 logs warnings only
    samples = [sorted(os.listdir(tmp_path / run / "samples")) for run in ("two", "one")]
    assert samples[0] == samples[1] == ["teacher_heun7.npz", "teacher_heun7.png"]


@pytest.mark.slow
def test_tiny_image_model_on_two_processes(tmp_path):
    """DDPM++ at width 16 on the digits, the batch of 8 split 4 + 4 over the processes."""
    _stop_and_resume("toy_edm", run_utils.DIGITS, tmp_path, logged_before_stop=1)
