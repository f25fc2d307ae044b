"""The progress line's estimates: rate and ETA over recent steps, the loss over the log interval."""

import os
import subprocess
import sys

import pytest

from consistency_jax.training.log import RATE_WINDOW, StepRate, interval_record, progress_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def test_rate_and_eta_leave_out_a_slow_first_step():
    """Step 1 compiles for 60 s, then 0.1 s a step: the rate is 10 steps/s from the first log
    point on (the first mark comes after step 1), not the 1.3 steps/s of the overall mean."""
    rate, now = StepRate(), 60.0
    rate.mark(1, now)  # after the first (compiling) step
    assert rate.rate() is None and rate.eta(100) is None  # not known from one point
    for step in range(11, 101, 10):
        now += 1.0
        rate.mark(step, now)
        assert rate.rate() == pytest.approx(10.0)
    assert rate.eta(900) == pytest.approx(90.0)


def test_the_rate_follows_the_recent_steps_only():
    """After a slowdown from 10 to 2 steps/s, the window forgets the fast steps."""
    rate, now = StepRate(), 0.0
    for step in range(0, 200, 10):
        rate.mark(step, now)
        now += 1.0
    for step in range(200, 200 + 10 * (RATE_WINDOW + 1), 10):
        rate.mark(step, now)
        now += 5.0
    assert rate.rate() == pytest.approx(2.0)


def test_a_record_averages_loss_and_grad_norm_over_the_interval_and_skips_non_finite_steps():
    host = [
        {"loss": 1.0, "grad_norm": 4.0, "finite": 1.0, "num_scales": 10.0, "target_ema": 0.9},
        {"loss": float("nan"), "grad_norm": float("nan"), "finite": 0.0, "num_scales": 10.0, "target_ema": 0.9},
        {"loss": 3.0, "grad_norm": 2.0, "finite": 1.0, "num_scales": 12.0, "target_ema": 0.95},
    ]
    record = interval_record(30, host, 7.5, skipped=1)
    assert record == {"step": 30, "loss": 2.0, "grad_norm": 3.0, "finite": 1.0, "num_scales": 12.0,
                      "target_ema": 0.95, "steps_per_sec": 7.5, "skipped": 1}
    line = progress_line(record, 100, 70 / 7.5)
    assert line == "step 30/100 loss 2 N 12 mu 0.95000 7.5 steps/s ETA 0m09s"
    no_rate = interval_record(1, host[:1], None, skipped=0)
    assert "steps_per_sec" not in no_rate and progress_line(no_rate, 100, None) == "step 1/100 loss 1 N 10 mu 0.90000"


def test_the_command_line_starts_without_pytorch():
    """tensorboardX imports torch wherever it is installed (as in the test environment); the run
    logs numpy only, so launch.py must start without it (seconds of start-up per run)."""
    code = "import sys, consistency_jax.jobs.cli as cli; assert cli and 'torch' not in sys.modules, 'torch'"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from consistency_jax.training import log

    assert log.SummaryWriter is not None  # TensorBoard itself still loads
