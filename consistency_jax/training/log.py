"""Progress of a run: the JSONL metrics log, TensorBoard, the progress line (rate and ETA), and
the non-finite-loss stop."""

import collections
import json
import os
import sys
import time
from collections.abc import Callable

import jax
import numpy as np
from absl import logging
from matplotlib.image import imread

from consistency_jax.training import files, parallel


def _summary_writer_class() -> type | None:
    """tensorboardX's SummaryWriter (None where it is not installed; requirements.txt pins it),
    imported with PyTorch hidden: tensorboardX imports torch wherever it is installed, seconds of
    start-up for every run, and the run logs numpy arrays only."""
    hidden = "torch" not in sys.modules
    if hidden:
        sys.modules["torch"] = None  # `import torch` raises ImportError
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    finally:
        if hidden:
            del sys.modules["torch"]
    return SummaryWriter


SummaryWriter = _summary_writer_class()

TB_DIR = "tensorboard"  # workdir/tensorboard: the event files of every job of the run
RATE_WINDOW = 10  # the rate is measured over this many of the latest log points
# metrics averaged over the log interval; the others are the interval's last value
AVERAGED = ("loss", "grad_norm")


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient stopped being finite."""


def format_duration(seconds: float) -> str:
    """A duration as 1h05m or 3m07s (progress ETAs)."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class StepRate:
    """Steps per second over the latest log points (a window of RATE_WINDOW), so a slow first
    step (compilation) stops counting once it is out of the window, and the ETA from it.

    `mark(step, now)` records that `step` steps were done at time `now`; the first mark should
    come after the first step, so no interval holds the compilation."""

    def __init__(self, window: int = RATE_WINDOW):
        self.points: collections.deque[tuple[int, float]] = collections.deque(maxlen=window + 1)

    def mark(self, step: int, now: float) -> None:
        self.points.append((step, now))

    def rate(self) -> float | None:
        """Steps per second between the oldest and newest point in the window (None before two)."""
        if len(self.points) < 2:
            return None
        (s0, t0), (s1, t1) = self.points[0], self.points[-1]
        return (s1 - s0) / max(t1 - t0, 1e-9)

    def eta(self, remaining: int) -> float | None:
        """Seconds for `remaining` more steps at `rate` (None while it is not known)."""
        rate = self.rate()
        return None if rate is None else remaining / max(rate, 1e-9)


def tensorboard(workdir: str, purge_from: int | None = None):
    """A TensorBoard writer appending to workdir/TB_DIR (process 0; None elsewhere or without
    tensorboardX). With `purge_from`, TensorBoard drops the events of earlier files at steps >=
    it (the steps a resumed run trains again), so every step has one value."""
    if SummaryWriter is None or not parallel.is_main_process():
        return None
    # the suffix orders two writers started within one second (the name has whole seconds)
    return SummaryWriter(os.path.join(workdir, TB_DIR), purge_step=purge_from, filename_suffix=f".{time.time_ns()}")


def board_png(writer, tag: str, path: str, step: int) -> None:
    """The PNG at `path` (a sample grid or plot) as TensorBoard image `tag` at `step`."""
    image = imread(path)
    writer.add_image(tag, np.asarray(image[..., :3] * 255, np.uint8), step, dataformats="HWC")


def _records_up_to(path: str, step: int) -> tuple[list[str], bool]:
    """The lines of the JSONL log at `path` whose step is at most `step`, and whether any other
    line (a step to be trained again, or a line cut short) was dropped."""
    kept, dropped = [], False
    with open(path) as f:
        for line in f.read().splitlines():
            try:
                record = json.loads(line)
                keep = record["step"] <= step
            except (ValueError, KeyError, TypeError):
                keep = False
            kept += [line] if keep else []
            dropped |= not keep
    return kept, dropped


class MetricsLog:
    """Collects per-step metrics on device; on flush checks finiteness, and (process 0) appends a
    JSONL record and TensorBoard scalars, and logs the progress line. Every process checks, so
    all stop at the same step.

    A record holds the step, `loss` and `grad_norm` averaged over the steps since the last one,
    the other metrics at its last step, the learning rate `lr` (a constant or an optax schedule), and
    `steps_per_sec` over the recent steps (StepRate; absent until known).

    A run resumed at step `start` first drops the log's records of later steps (they are trained
    again), and TensorBoard purges them, so every step has one record."""

    def __init__(
        self, workdir: str, total_steps: int, nan_policy: str, manager, start: int = 0,
        lr: float | Callable[[int], float] | None = None,
    ):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.total, self.nan_policy, self.manager = total_steps, nan_policy, manager
        self.lr = lr
        self.pending: list[tuple[int, dict, int]] = []
        self.step0 = None
        self.rate = StepRate()
        self.flushed = False
        resumed = os.path.isdir(os.path.join(workdir, TB_DIR))
        self.board = tensorboard(workdir, start + 1 if resumed else None)
        if parallel.is_main_process() and os.path.exists(self.path):
            kept, dropped = _records_up_to(self.path, start)
            if dropped:
                text = "".join(line + "\n" for line in kept).encode()
                files.write_atomic(self.path, lambda f: f.write(text), "the metrics log")

    def add(self, step: int, metrics: dict, steps: int = 1) -> None:
        """Metrics of step `step`, or (`steps` > 1) of steps step.. on a leading axis."""
        if self.step0 is None:  # the first call compiles: time the rate from its end
            self.step0 = step
            jax.block_until_ready(metrics)
            self.rate.mark(step + steps, time.perf_counter())
        self.pending.append((step, metrics, steps))

    def close(self) -> None:
        """Close the TensorBoard event file."""
        if self.board is not None:
            self.board.close()

    def _last_checkpoint(self) -> str:
        step = self.manager.latest_step()
        where = self.manager.directory
        return f"step {step} in {where}" if step is not None else f"none yet in {where}"

    def _after_resume(self) -> str:
        """Corrupt input as a suspect, when the loss fails in the first steps after a resume."""
        if self.flushed or not self.step0:
            return ""
        return (
            f" This came within the first steps after resuming from step {self.step0}: if the loss "
            "was finite before, the data or that checkpoint may be corrupt (its arrays are checked "
            "against their checksums when restored, its data iterator position is not); "
            f"moving checkpoint {self.step0} into checkpoints_unreadable/ resumes from the one before."
        )

    def flush(self) -> None:
        if not self.pending:
            return
        steps, host = [], []
        for (first, _, n), m in zip(self.pending, jax.device_get([m for _, m, _ in self.pending])):
            steps += range(first, first + n)
            host += [m] if n == 1 else [{k: v[i] for k, v in m.items()} for i in range(n)]
        self.pending = []
        bad = [s for s, m in zip(steps, host) if not m["finite"]]
        if bad and self.nan_policy == "stop":
            raise NonFiniteLossError(
                f"The loss or gradient became non-finite at step {bad[0] + 1}; its update was not "
                f"applied. Last good checkpoint: {self._last_checkpoint()}. Lower optim.lr, set "
                f"optim.grad_clip, or set train.nan_policy=skip to skip such steps.{self._after_resume()}"
            )
        self.flushed = True
        done = steps[-1] + 1
        if done > self.rate.points[-1][0]:
            self.rate.mark(done, time.perf_counter())
        if not parallel.is_main_process():
            return
        record = interval_record(done, host, self.rate.rate(), len(bad))
        if self.lr is not None:
            record["lr"] = float(self.lr(steps[-1]) if callable(self.lr) else self.lr)
        files.append_line(self.path, json.dumps(record), "the metrics log")
        if self.board is not None:
            for key, value in record.items():
                if key != "step":
                    self.board.add_scalar(f"train/{key}", value, done)
            self.board.flush()  # on disk at every log point, whatever ends the run
        logging.info("%s", progress_line(record, self.total, self.rate.eta(self.total - done)))


def interval_record(done: int, host: list[dict], rate: float | None, skipped: int) -> dict:
    """The record of the steps in `host` (ending with step `done`): AVERAGED metrics averaged over
    the finite steps, the others at the last step."""
    finite = [m for m in host if m["finite"]] or host
    record = {"step": done} | {k: float(v) for k, v in host[-1].items()}
    record |= {k: float(np.mean([m[k] for m in finite])) for k in AVERAGED if k in record}
    return record | ({"steps_per_sec": rate} if rate is not None else {}) | {"skipped": skipped}


def progress_line(record: dict, total: int, eta: float | None) -> str:
    """step 300/2000 loss 0.0123 (mean of the interval), curriculum, rate and ETA."""
    extra = f" N {int(record['num_scales'])} mu {record['target_ema']:.5f}" if "num_scales" in record else ""
    extra += f" stage {int(record['ect_stage'])}" if "ect_stage" in record else ""
    rate = f" {record['steps_per_sec']:.1f} steps/s ETA {format_duration(eta)}" if eta is not None else ""
    return f"step {record['step']}/{total} loss {record['loss']:.5g}{extra}{rate}"
