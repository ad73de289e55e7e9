"""The driver's side of the sweep's Ray metrics (see study.ray_metrics): a Ray Tune callback that
publishes, per phase, the trials in each status, the best val_loss so far per technique, and the
epochs done against the epochs planned."""
from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from ray import tune

from . import ray_metrics
from .config import make_config
from .metrics import OBJECTIVE
from .trial_table import table_status, trial_params, upgrade_record

STEP_EVERY_S = 1.0  # Tune steps many times a second; the gauges need far less


def trial_status(tune_status: str, ended: str | None, last_result: dict[str, Any], max_epochs: int) -> str:
    """The trial table's status (study.trial_table.collect) as far as the driver sees it now:
    ``ended`` is "done" or "errored" once Tune said so (its own status may lag behind)."""
    if ended == "errored" or tune_status == "ERROR":
        view = "errored"
    elif ended == "done" or tune_status == "TERMINATED":
        view = "done"
    elif tune_status == "RUNNING":
        view = "running"
    else:
        return "pending"  # (not in the table yet: no epoch reported)
    return table_status(view, full=int(last_result.get("epoch") or 0) >= max_epochs,
                        diverged=bool(last_result.get("diverged")))


class SweepProgress(tune.Callback):
    """``planned_trials``: the phase's trials (num_samples, or configurations x seeds)."""

    def __init__(self, experiment: str, phase: str, fixed: dict[str, Any], planned_trials: int):
        self.experiment, self.phase, self.fixed, self.planned_trials = experiment, phase, dict(fixed), planned_trials
        self.max_epochs = int(make_config(upgrade_record(dict(fixed))).epochs)
        self.best: dict[str, float] = {}
        self._trials: dict[str, tuple[str, int]] = {}  # trial id -> (technique, max epochs)
        self._ended: dict[str, str] = {}
        self._last = 0.0

    # Tune saves and restores this with the experiment (a --resume keeps the best so far).
    def get_state(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best = dict(state.get("best", {}))

    def _trial(self, trial) -> tuple[str, int]:
        tid = str(trial.trial_id)
        if tid not in self._trials:
            try:
                cfg = make_config(upgrade_record({**self.fixed, **trial_params(dict(trial.config or {}))}))
                self._trials[tid] = (cfg.regularizer, int(cfg.epochs))
            except Exception:  # noqa: BLE001 - a trial Tune could not run is Tune's to report
                self._trials[tid] = (str(self.fixed.get("regularizer", "?")), self.max_epochs)
        return self._trials[tid]

    def counts(self, trials) -> Counter:
        """Trials per status (ray_metrics.STATUSES), those not proposed yet as pending."""
        counts = Counter(trial_status(t.status, self._ended.get(str(t.trial_id)), t.last_result or {},
                                      self._trial(t)[1]) for t in trials)
        counts["pending"] += max(0, self.planned_trials - len(trials))  # (not proposed yet)
        return counts

    @staticmethod
    def epochs_done(trials) -> int:
        return sum(int((t.last_result or {}).get("epoch") or 0) for t in trials)

    @property
    def epochs_planned(self) -> int:
        return self.planned_trials * self.max_epochs

    def publish(self, trials) -> None:
        self._last = time.monotonic()
        tags = {"experiment": self.experiment, "phase": self.phase}
        counts = self.counts(trials)
        pub = ray_metrics.publisher()
        for status in ray_metrics.STATUSES:
            pub.set("trials", {**tags, "status": status}, counts.get(status, 0))
        for technique, value in self.best.items():
            pub.set("best_val_loss", {**tags, "technique": technique}, value)
        pub.set("epochs_done", tags, self.epochs_done(trials))
        pub.set("epochs_planned", tags, self.epochs_planned)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._ended.pop(str(trial.trial_id), None)
        value = result.get(OBJECTIVE)
        if isinstance(value, (int, float)) and math.isfinite(value):
            technique = self._trial(trial)[0]
            self.best[technique] = min(self.best.get(technique, math.inf), float(value))
        # (published by on_step_end within STEP_EVERY_S: counting every trial on every result
        # would grow with trials x results)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended[str(trial.trial_id)] = "done"
        self.publish(trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended[str(trial.trial_id)] = "errored"
        self.publish(trials)

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last >= STEP_EVERY_S:
            self.publish(trials)
