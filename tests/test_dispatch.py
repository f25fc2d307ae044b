"""Several optimizer steps per dispatch (config.train.steps_per_dispatch): the same run as one step
per dispatch (stopping and resuming between dispatches: tests/test_checkpoint.py). Runs go through
launch.py (see run_utils)."""

import numpy as np
import pytest
import run_utils

from consistency_jax.training.log import MetricsLog, NonFiniteLossError

# CT: a target EMA, RAdam and a curriculum that all read the step inside the scanned step.
VALUES = {"train.num_steps": 8, "train.log_every": 4, "train.ckpt_every": 8}


@pytest.mark.slow
def test_k_steps_per_dispatch_equal_k_dispatches_of_one_step(tmp_path):
    """A scan over 4 stacked batches and keys, each batch split over 2 devices, makes the steps
    that 4 calls of the single step make: same state, same logged losses."""
    states, logs = {}, {}
    for k in (1, 4):
        workdir = str(tmp_path / f"k{k}")
        values = VALUES | {"train.steps_per_dispatch": k}
        run_utils.run(run_utils.launch_args("toy_ct", workdir, values), str(tmp_path / f"k{k}.log"), devices=2)
        states[k] = run_utils.restore_state(run_utils.config("toy_ct", values), workdir)
        logs[k] = run_utils.logged_steps(workdir)
    assert states[1].keys() == states[4].keys()
    for name in states[1]:
        np.testing.assert_allclose(states[4][name], states[1][name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert sorted(logs[4]) == sorted(logs[1]) == [4, 8]
    for step in (4, 8):
        np.testing.assert_allclose(logs[4][step]["loss"], logs[1][step]["loss"], rtol=1e-5)
    assert int(states[4][".step"]) == 8


def test_metrics_of_a_dispatch_are_logged_per_step(tmp_path):
    """MetricsLog unstacks a dispatch's metrics: one finiteness check per step, the loss of the
    record averaged over its steps."""
    log = MetricsLog(str(tmp_path), total_steps=8, nan_policy="stop", manager=None)
    log.add(0, {"loss": np.array([1.0, 2.0, 3.0, 4.0]), "finite": np.ones(4)}, 4)
    log.add(4, {"loss": np.array([5.0, 6.0, 7.0, 8.0]), "finite": np.ones(4)}, 4)
    log.flush()
    assert run_utils.logged_steps(str(tmp_path))[8]["loss"] == 4.5
    log.add(8, {"loss": np.array([9.0, np.nan]), "finite": np.array([1.0, 0.0])}, 2)
    log.manager = type("Manager", (), {"latest_step": lambda self: 8, "directory": str(tmp_path)})()
    with pytest.raises(NonFiniteLossError, match="at step 10;"):
        log.flush()
