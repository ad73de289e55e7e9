"""The sweep's Ray metrics without a sweep: how many series a long sweep leaves published (the
bound), the driver's status of a trial, and ``--prometheus`` without the binary. The metrics on a
real cluster, in a real Prometheus: tests/test_watch_sweep.py."""
from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from study import ray_metrics
from study.sweep_progress import SweepProgress, trial_status


@pytest.fixture()
def publisher(monkeypatch):
    pub = ray_metrics.Publisher()
    monkeypatch.setattr(ray_metrics, "_PUBLISHER", pub)
    return pub


def test_a_thousand_trials_in_one_process_leave_one_trials_series(publisher):
    """A reused trial process publishes its current trial only: ended trials are forgotten, and
    so is a trial that Tune stopped without its thread reaching the end."""
    for i in range(1000):
        tags = {"experiment": "e", "phase": "search", "technique": "l2", "trial": f"search-{i:04d}"}
        for epoch in (1, 2):
            ray_metrics.trial_epoch(tags, {"epoch": epoch, "val_loss": 1.0 / epoch, "samples_per_s": "n/a"})
            published = publisher.published()
            assert len(published) == len(ray_metrics.TRIAL_METRICS)
            assert {t["trial"] for _, t, _ in published} == {tags["trial"]}
        if i % 3:  # (every third trial never gets to say that it ended)
            ray_metrics.trial_ended(tags)
            assert publisher.published() == []
    values = {name: v for name, _, v in publisher.published()}
    assert values["trial_epoch"] == 2 and values["trial_val_loss"] == 0.5
    assert values["trial_samples_per_s"] != values["trial_samples_per_s"]  # (not a number: NaN)


def fake_trial(i: int, status: str, epoch: int, **result):
    # The attributes of Tune's Trial that the callback reads (the real ones: test_watch_sweep.py).
    return SimpleNamespace(trial_id=f"t{i:04d}", status=status, config={"lr": 0.01},
                           last_result={"epoch": epoch, **result} if epoch else {})


def test_the_drivers_series_do_not_grow_with_the_trials(publisher):
    cb = SweepProgress("e", "search", {"task": "image", "regularizer": "l2", "epochs": 3}, planned_trials=1200)
    trials = []
    for i in range(1000):
        trials.append(fake_trial(i, "TERMINATED", 3 if i % 2 else 1))
        cb.on_trial_result(0, trials, trials[-1], {"val_loss": 1.0 + i / 1000})
    trials += [fake_trial(1000, "ERROR", 2), fake_trial(1001, "TERMINATED", 2, diverged=True),
               fake_trial(1002, "RUNNING", 2), fake_trial(1003, "PENDING", 0)]
    cb.on_trial_error(0, trials, trials[1000])
    series = {(name, tuple(sorted(tags.items()))) for name, tags, _ in publisher.published()}
    assert len(series) == len(ray_metrics.STATUSES) + 1 + 2  # statuses, one technique, done/planned
    got = {tags["status"]: v for name, tags, v in publisher.published() if name == "trials"}
    assert got == {"completed": 500, "stopped": 500, "errored": 1, "diverged": 1, "running": 1,
                   "pending": 1 + 1200 - 1004}
    values = {name: v for name, tags, v in publisher.published() if name != "trials"}
    assert values == {"best_val_loss": 1.0, "epochs_done": 500 * 3 + 500 + 2 + 2 + 2, "epochs_planned": 3600}


@pytest.mark.parametrize("tune_status, ended, result, expected", [
    ("RUNNING", None, {"epoch": 1}, "running"),
    ("RUNNING", "done", {"epoch": 3}, "completed"),  # (Tune calls on_trial_complete before it marks it)
    ("RUNNING", "done", {"epoch": 1}, "stopped"),
    ("TERMINATED", None, {"epoch": 2, "diverged": True}, "diverged"),
    ("ERROR", None, {"epoch": 2}, "errored"),
    ("PAUSED", None, {"epoch": 2}, "pending"),
    ("PENDING", None, {}, "pending"),
])
def test_trial_status_is_the_tables(tune_status, ended, result, expected):
    assert trial_status(tune_status, ended, result, max_epochs=3) == expected


def test_prometheus_without_the_binary_is_refused_before_anything(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    results = tmp_path / "results"
    r = subprocess.run([sys.executable, "-m", "study.run", "--space", "none", "--name", "x", "--results-dir",
                        str(results), "--prometheus"], env={**os.environ, "PATH": str(empty)},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: --prometheus: the prometheus binary is not on PATH; install it (Debian/Ubuntu: sudo apt-get "
        "install prometheus; elsewhere: https://prometheus.io/download/)"]
    assert not results.exists()
