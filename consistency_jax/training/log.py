"""Progress of a run: the JSONL metrics log, the progress line, and the non-finite-loss stop."""

import json
import os
import time

import jax
from absl import logging

from consistency_jax.training import files, parallel


class NonFiniteLossError(FloatingPointError):
    """The loss or its gradient stopped being finite."""


def format_duration(seconds: float) -> str:
    """A duration as 1h05m or 3m07s (progress ETAs)."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


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
    """Collects per-step metrics on device; on flush checks finiteness, and (process 0) appends
    JSONL and prints. Every process checks, so all stop at the same step.

    A run resumed at step `start` first drops the log's records of later steps (they are trained
    again), so every step has one record."""

    def __init__(self, workdir: str, total_steps: int, nan_policy: str, manager, start: int = 0):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.total, self.nan_policy, self.manager = total_steps, nan_policy, manager
        self.pending: list[tuple[int, dict, int]] = []
        self.t0, self.step0 = time.perf_counter(), None
        self.flushed = False
        if parallel.is_main_process() and os.path.exists(self.path):
            kept, dropped = _records_up_to(self.path, start)
            if dropped:
                text = "".join(line + "\n" for line in kept).encode()
                files.write_atomic(self.path, lambda f: f.write(text), "the metrics log")

    def add(self, step: int, metrics: dict, steps: int = 1) -> None:
        """Metrics of step `step`, or (`steps` > 1) of steps step.. on a leading axis."""
        if self.step0 is None:
            self.step0 = step
        self.pending.append((step, metrics, steps))

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
        if not parallel.is_main_process():
            return
        now = time.perf_counter()
        rate = (steps[-1] + 1 - self.step0) / max(now - self.t0, 1e-9)
        last = {k: float(v) for k, v in host[-1].items()}
        record = {"step": steps[-1] + 1, **last, "steps_per_sec": rate, "skipped": len(bad)}
        files.append_line(self.path, json.dumps(record), "the metrics log")
        extra = f" N {int(last['num_scales'])} mu {last['target_ema']:.5f}" if "num_scales" in last else ""
        extra += f" stage {int(last['ect_stage'])}" if "ect_stage" in last else ""
        eta = format_duration((self.total - steps[-1] - 1) / max(rate, 1e-9))
        logging.info(
            "step %d/%d loss %.5g%s %.1f steps/s ETA %s", steps[-1] + 1, self.total,
            last["loss"], extra, rate, eta,
        )
