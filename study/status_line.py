"""The sweep's live status line: one compact line every ``every_s`` seconds while a phase runs.

    [search 2:10 elapsed, ~4:30 left] trials 2 running, 3 finished, 1 stopped by ASHA, 0 errored, 2 pending | epochs 11/24 | best val_loss: l2 1.2345, dropout 1.3012

The counting is study.sweep_progress's (the same numbers as the Ray metrics). "Left" is an
upper bound: the epochs still planned at the pace of this driver's epochs so far (ASHA stops
trials early, so the sweep usually ends sooner).
"""
from __future__ import annotations

import contextlib
import math
import os
import time

from .sweep_progress import SweepProgress

NEW_OUTPUT_ENV = "RAY_AIR_NEW_OUTPUT"  # Ray Tune's choice of output engine (see tune_output)


def clock(seconds: float) -> str:
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def line(phase: str, counts, done: int, planned: int, best: dict[str, float], elapsed_s: float,
         left_s: float | None) -> str:
    left = f", ~{clock(left_s)} left" if left_s is not None and math.isfinite(left_s) else ""
    trials = (f"{counts.get('running', 0)} running, {counts.get('completed', 0)} finished, "
              f"{counts.get('stopped', 0)} stopped by ASHA, {counts.get('errored', 0)} errored")
    for extra in ("diverged", "pending"):
        if counts.get(extra):
            trials += f", {counts[extra]} {extra}"
    bests = ", ".join(f"{k} {v:.4f}" for k, v in sorted(best.items(), key=lambda kv: kv[1])) or "-"
    return (f"[{phase} {clock(elapsed_s)} elapsed{left}] trials {trials} | epochs {done}/{planned} | "
            f"best val_loss: {bests}")


class StatusLine(SweepProgress):
    """SweepProgress (the Ray metrics) that also prints the status line every ``every_s`` seconds
    (``every_s`` <= 0 or inf: never)."""

    def __init__(self, *args, every_s: float = 30.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.every_s = every_s
        self._start: float | None = None
        self._printed = 0.0
        self._done_at_start: int | None = None

    def setup(self, **info):
        self._start = self._printed = time.monotonic()
        self._done_at_start = None

    def status(self, trials) -> str:
        now = time.monotonic()
        start = self._start if self._start is not None else now
        done = self.epochs_done(trials)
        if self._done_at_start is None:
            self._done_at_start = done  # (a continued phase: its earlier epochs are not this pace)
        ran, elapsed = done - self._done_at_start, now - start
        left = (self.epochs_planned - done) * elapsed / ran if ran > 0 else None
        return line(self.phase, self.counts(trials), done, self.epochs_planned, self.best, elapsed, left)

    def on_step_end(self, iteration, trials, **info):
        super().on_step_end(iteration, trials, **info)
        if self._done_at_start is None and trials:
            self._done_at_start = self.epochs_done(trials)
        if 0 < self.every_s < math.inf and time.monotonic() - self._printed >= self.every_s:
            self._printed = time.monotonic()
            print(self.status(trials), flush=True)


@contextlib.contextmanager
def tune_output(verbose: bool):
    """Ray Tune's own console output only with ``verbose``: its newer output engine prints a
    configuration table and a misleading ``tensorboard --logdir .../driver_artifacts`` hint even
    at verbosity 0; the legacy engine at verbosity 0 prints nothing (read when fit() starts)."""
    saved = os.environ.get(NEW_OUTPUT_ENV)
    if not verbose:
        os.environ[NEW_OUTPUT_ENV] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(NEW_OUTPUT_ENV, None)
        else:
            os.environ[NEW_OUTPUT_ENV] = saved

