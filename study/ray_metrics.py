"""The sweep's progress as Ray metrics (``ray.util.metrics`` gauges), for Prometheus and the
Ray dashboard. Ray exports them from every node's metrics endpoint, prefixed ``ray_``:
``regstudy_trial_val_loss`` is scraped as ``ray_regstudy_trial_val_loss``.

Trial side (study.trainable, the process that trains the trial), tags experiment, phase,
technique, trial (the trial table's ``trial_id``): the last reported epoch's
``regstudy_trial_<metric>`` for each of :data:`TRIAL_METRICS`.

Driver side (study.sweep_progress, a Ray Tune callback), tags experiment, phase (and status or
technique): ``regstudy_trials`` per status, ``regstudy_best_val_loss`` per technique,
``regstudy_epochs_done`` and ``regstudy_epochs_planned``.

Bounded series: Ray exports a gauge only after it was set again, and its metrics agent forgets a
series two export intervals (20 s by default) after its last export. Each process here re-sets
what it publishes every :data:`KEEPALIVE_S` seconds, and a trial's process publishes one trial
at a time: a trial's series leave Ray's endpoints within about half a minute of its end
(Prometheus keeps their history). On the endpoints there are at any time 6 series per running
(or just ended) trial, and per phase one series per status, one per technique and two epoch
counts, whatever the number of trials. No searched value or message becomes a label.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from .metrics import STATUSES as TABLE_STATUSES

PREFIX = "regstudy_"  # Ray's own metrics are ray_<name>: ours stay apart as ray_regstudy_<name>
TRIAL_METRICS = ("epoch", "train_loss", "train_clean_loss", "val_loss", "gap_loss", "samples_per_s")
TRIAL_TAGS = ("experiment", "phase", "technique", "trial")
# The driver's trial statuses: the trial table's (study.metrics.STATUSES) as Tune sees them live,
# plus "pending" (waiting, or not proposed yet). ("interrupted" is the table's word, after the fact,
# for the trials still running when the driver stopped.)
STATUSES = ("pending",) + tuple(s for s in TABLE_STATUSES if s != "interrupted")
KEEPALIVE_S = 2.0

GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    **{f"trial_{m}": (f"the trial's last reported {m}", TRIAL_TAGS) for m in TRIAL_METRICS},
    "trials": ("trials of the phase in each status", ("experiment", "phase", "status")),
    "best_val_loss": ("lowest val_loss reported so far by a trial of the technique",
                      ("experiment", "phase", "technique")),
    "epochs_done": ("epochs reported so far, summed over the phase's trials", ("experiment", "phase")),
    "epochs_planned": ("the phase's epoch budget: trials x max epochs (ASHA stops some early)",
                       ("experiment", "phase")),
}


def exported_name(name: str) -> str:
    """The name Prometheus sees (Ray prefixes its namespace)."""
    return f"ray_{PREFIX}{name}"


class Publisher:
    """One per process: sets the gauges and keeps setting them while they are published."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gauges: dict[str, Any] = {}
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._thread: threading.Thread | None = None

    def set(self, name: str, tags: Mapping[str, str], value: float) -> None:
        key = (name, tuple(sorted((k, str(v)) for k, v in tags.items())))
        with self._lock:
            self._values[key] = float(value)
            self._record(name, key[1], float(value))
            self._start()

    def forget(self, **match: str) -> None:
        """Stop publishing every series whose tags include ``match`` (Ray then drops them)."""
        items = set(match.items())
        with self._lock:
            for key in [k for k in self._values if items <= set(k[1])]:
                del self._values[key]

    def published(self) -> list[tuple[str, dict[str, str], float]]:
        with self._lock:
            return [(name, dict(tags), v) for (name, tags), v in self._values.items()]

    def _gauge(self, name: str):
        if name not in self._gauges:
            from ray.util.metrics import Gauge

            description, tag_keys = GAUGES[name]
            self._gauges[name] = Gauge(PREFIX + name, description, tag_keys=tag_keys)
        return self._gauges[name]

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._keepalive, name="regstudy-metrics", daemon=True)
            self._thread.start()

    def _record(self, name: str, tags: tuple[tuple[str, str], ...], value: float) -> None:
        try:
            self._gauge(name).set(value, tags=dict(tags))
        except Exception:  # noqa: BLE001 - metrics must never disturb the sweep
            pass

    def _keepalive(self) -> None:
        while True:
            time.sleep(KEEPALIVE_S)
            with self._lock:
                for (name, tags), value in self._values.items():
                    self._record(name, tags, value)


_PUBLISHER = Publisher()


def publisher() -> Publisher:
    return _PUBLISHER


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def trial_epoch(tags: Mapping[str, str], metrics: Mapping[str, Any]) -> None:
    """Publish a trial's reported epoch. A process trains one trial at a time: a new trial's
    first epoch replaces the series of the one before (which may have been stopped by Tune
    without reaching its own end)."""
    pub = publisher()
    for name, old_tags, _ in pub.published():
        if name.startswith("trial_") and old_tags.get("trial") != tags["trial"]:
            pub.forget(trial=old_tags["trial"])
    for m in TRIAL_METRICS:
        pub.set(f"trial_{m}", tags, _number(metrics.get(m)))


def trial_ended(tags: Mapping[str, str]) -> None:
    publisher().forget(trial=tags["trial"])
