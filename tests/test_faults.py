"""Faults on a real local Ray cluster: a worker killed mid-epoch, GPU out-of-memory, a full disk
(in a trial and in the driver), a diverging trial, the driver interrupted by SIGINT, SIGTERM and
SIGKILL; and what is exposed: listening addresses, file permissions, credentials."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import psutil
import pytest
import ray

from procs import wait_for
from study.run import main
from study.trial_table import read_trial_rows

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def reports(trial_dir: Path) -> list[dict]:
    return read_trial_rows(trial_dir)


def per_trial(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values("epoch").groupby("trial_id").agg(
        status=("status", "last"), epochs=("epoch", list), failures=("failures", "last"), error=("error", "last"))


def test_killed_worker_oom_and_full_disk_in_trials(faults, tiny_zip, tmp_path, cache_dir, capsys):
    """Three trials; at epoch 2 every trial's worker is SIGKILLed once (mid-epoch: trained, not
    yet reported); then one trial runs out of GPU memory on every attempt and another cannot
    write its checkpoint (disk full). --max-failures 2: the first ends errored after 3 failed
    attempts with the OOM as its reason, the second errored with ENOSPC, the third completes
    with each epoch once; the sweep finishes."""
    faults.write_text("sigkill_once@2,oom_one_trial@2,enospc_one_trial@2")
    try:
        rc = main(["--space", "none", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", "3",
                   "--set", "batch_size=16", "--name", "f", "--results-dir", str(tmp_path), "--num-samples", "3",
                   "--max-concurrent", "2", "--grace-period", "3", "--max-failures", "2"])
    finally:
        faults.write_text("")
    out = capsys.readouterr().out
    assert rc == 0
    table = pd.read_parquet(tmp_path / "f" / "trials.parquet")
    t = per_trial(table)
    assert len(t) == 3 and not table.duplicated(["trial_id", "epoch"]).any()
    assert sorted(t.status) == ["completed", "errored", "errored"]
    oom = t[t.error.str.contains("out of GPU memory")]
    disk = t[t.error.str.contains("no space left")]
    done = t[t.status == "completed"]
    assert len(oom) == len(disk) == len(done) == 1
    # the errored trials keep the epoch they finished; each used its retries (sigkill + 2 faults)
    for row in (oom.iloc[0], disk.iloc[0]):
        assert row.status == "errored" and row.epochs == [1] and row.failures == 3
    assert "batch_size=16" in oom.error.iloc[0] and "--gpus-per-trial" in oom.error.iloc[0]
    assert "kept" in disk.error.iloc[0]
    # the survivor: killed once at epoch 2, resumed from epoch 1's checkpoint, each epoch once
    assert done.epochs.iloc[0] == [1, 2, 3] and done.failures.iloc[0] == 1 and done.error.iloc[0] == ""
    trial_dir = tmp_path / "f" / "ray" / "search" / f"trial_{done.index[0].removeprefix('search-')}"
    assert (trial_dir / ".faults").read_text().split() == ["sigkill@2"]
    restored = {r["epoch"]: r["restored_from_epoch"] for r in reports(trial_dir)}
    # (result.json may lack epoch 1: Tune can drop a report that a worker death follows at once;
    # the table has it from the checkpoint's history, as asserted above)
    assert restored.get(1, 0) == 0 and restored[2] == restored[3] == 1, restored
    oom_dir = tmp_path / "f" / "ray" / "search" / f"trial_{oom.index[0].removeprefix('search-')}"
    assert (oom_dir / ".faults").read_text().split() == ["sigkill@2", "oom@2", "oom@2"]
    # the driver's summary names each failure's reason in one line
    assert "errored at epoch 1 after 3 failed attempt(s): " in out and "out of GPU memory" in out
    assert "no space left for checkpoints" in out


def test_diverging_trial_is_recorded_and_the_sweep_goes_on(faults, tiny_zip, tmp_path, cache_dir, capsys):
    space = tmp_path / "wild.yaml"
    space.write_text("description: a learning rate that blows up\n"
                     "fixed: {regularizer: none, epochs: 2, batch_size: 16}\n"
                     "search:\n  lr: {dist: categorical, choices: [0.001, 1.0e+30]}\n"
                     "sweep: {num_samples: 4, grace_period: 2, seed: 0}\n")
    rc = main(["--space", str(space), "--data", str(tiny_zip), "--classes", "4", "--name", "d",
               "--results-dir", str(tmp_path / "res"), "--max-concurrent", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    table = pd.read_parquet(tmp_path / "res" / "d" / "trials.parquet")
    t = table.sort_values("epoch").groupby("trial_id").agg(lr=("lr", "first"), status=("status", "last"),
                                                             epochs=("epoch", "max"), diverged=("diverged", "any"))
    assert set(t.lr) == {0.001, 1e30}, "seed 0 should draw both learning rates"
    wild, sane = t[t.lr == 1e30], t[t.lr == 0.001]
    assert (wild.status == "diverged").all() and wild.diverged.all() and (wild.epochs == 1).all()
    assert (sane.status == "completed").all() and (sane.epochs == 2).all() and not sane.diverged.any()
    assert "diverged at epoch 1 after 0 failed attempt(s): the loss became NaN/inf" in out
    summary = pd.read_csv(tmp_path / "res" / "d" / "summary.csv")
    assert summary.status.value_counts().to_dict() == t.status.value_counts().to_dict()


def test_full_disk_in_the_driver_keeps_what_was_written(faults, tiny_zip, tmp_path, cache_dir, capsys,
                                                       monkeypatch):
    """The disk fills while the driver rewrites the trial table: one clear line, exit 1, the
    last table written stays whole, and --resume (with space again) completes without re-running."""
    from study import trial_table
    real, calls = trial_table.write_tables, []

    def fill_up(table, out_dir):
        calls.append(len(table))
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(out_dir / "trials.parquet"))
        real(table, out_dir)

    args = ["--space", "none", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", "1", "--set",
            "batch_size=16", "--name", "full", "--results-dir", str(tmp_path), "--num-samples", "2",
            "--max-concurrent", "1", "--table-refresh-s", "0"]
    monkeypatch.setattr(trial_table, "write_tables", fill_up)
    assert main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "--resume" in err[0], err
    exp = tmp_path / "full"
    first = pd.read_parquet(exp / "trials.parquet")
    assert len(calls) >= 2 and len(first) == calls[0] >= 1  # the first write, whole
    assert not list(exp.glob(".trials*"))  # no temp file left behind
    trial_dirs = sorted((exp / "ray" / "search").glob("trial_*"))
    before = {d.name: reports(d) for d in trial_dirs}
    assert len(before) == 2 and all(len(r) == 1 for r in before.values())

    monkeypatch.setattr(trial_table, "write_tables", real)
    assert main(args + ["--resume"]) == 0
    table = pd.read_parquet(exp / "trials.parquet")
    assert table.trial_id.nunique() == 2 and set(table.status) == {"completed"} and len(table) == 2
    assert {d.name: reports(d) for d in trial_dirs} == before  # nothing re-ran


def _listening(pids: set[int]) -> set[str]:
    return {c.laddr.ip for c in psutil.net_connections("inet")
            if c.pid in pids and c.status == psutil.CONN_LISTEN and c.laddr}


def _tree(pid: int) -> set[int]:
    try:
        p = psutil.Process(pid)
        return {pid, *(c.pid for c in p.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _driver(args, log: Path, umask: int | None = None) -> subprocess.Popen:
    # (each epoch 1 s slower: a signal sent after a trial's first epoch lands inside that trial)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "REGSTUDY_FAULT": "sleep@1"}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "study.run", *args], env=env, start_new_session=True,
                                stdout=out, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def test_driver_interrupted_sigint_sigterm_sigkill_then_resume(faults, tiny_zip, tmp_path, cache_dir, capsys):
    """Four trials, one at a time. Driver 1 (umask 027): its cluster listens on loopback only;
    Ctrl-C (SIGINT) in trial 2 -> exit 130, 'interrupted' rows, permissions follow the umask.
    Driver 2 (--resume): SIGTERM in trial 3 -> the same graceful stop. Driver 3 (--resume):
    SIGKILL in trial 4, leaving its lock file. An in-process --resume then takes the stale lock
    over and completes: no trial re-run, no row twice."""
    ray.shutdown()  # the drivers below start their own clusters; free the CPUs
    results = tmp_path / "results"
    exp = results / "r"
    search_dir = exp / "ray" / "search"
    args = ["--space", "l2_dropout", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", "3",
            "--set", "batch_size=16", "--name", "r", "--results-dir", str(results), "--num-samples", "4",
            "--max-concurrent", "1", "--num-cpus", "1", "--grace-period", "3", "--table-refresh-s", "0"]

    def checkpoints(d: Path) -> int:
        # checkpoints written so far (one per epoch; result.json in storage is synced only now and
        # then): the newest's index + 1, as Tune numbers them from 0 and keeps the newest 2
        return max((int(p.name.rsplit("_", 1)[1]) + 1 for p in d.glob("checkpoint_*")), default=0)

    def finished() -> dict[str, int]:
        return {d.name: checkpoints(d) for d in search_dir.glob("trial_*") if checkpoints(d) >= 3}

    def in_next_trial(done: dict[str, int]):
        # a trial finished since `done`, and the next one has reported its first epoch (of 3)
        return lambda: len(finished()) > len(done) and any(
            1 <= checkpoints(d) < 3 for d in search_dir.glob("trial_*") if d.name not in done)

    # --- driver 1: SIGINT ------------------------------------------------------------------------
    log = tmp_path / "driver1.log"
    proc = _driver(args, log, umask=0o027)
    seen: dict[str, object] = {}
    try:
        def ready():
            if "listen" not in seen and "Ray dashboard: http://127.0.0.1:" in log.read_text():
                url = log.read_text().split("Ray dashboard: ", 1)[1].split()[0]
                seen["dashboard"] = urllib.request.urlopen(url, timeout=5).status
                seen["listen"] = _listening(_tree(proc.pid))
                seen["names"] = {p.name() for p in map(psutil.Process, _tree(proc.pid)) if p.is_running()}
            return "listen" in seen and in_next_trial({})()
        wait_for(proc, log, ready, "trial 2")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    text = log.read_text()
    assert rc == 130, text[-3000:]
    assert "interrupted: search phase interrupted" in text and "--resume" in text
    assert seen["dashboard"] == 200 and "gcs_server" in seen["names"] and "raylet" in seen["names"]
    assert seen["listen"] and seen["listen"] <= LOOPBACK, seen["listen"]  # GCS, raylet, dashboard, agents
    table = pd.read_parquet(exp / "trials.parquet")
    assert not table.duplicated(["trial_id", "epoch"]).any()
    assert set(table.status) <= {"completed", "interrupted"} and "completed" in set(table.status)
    # everything the driver and its workers wrote follows its umask (027: nothing for others)
    paths = [p for p in exp.rglob("*")]
    assert len(paths) > 10
    loose = [(str(p.relative_to(exp)), oct(p.stat().st_mode & 0o777)) for p in paths if p.stat().st_mode & 0o027]
    assert not loose, loose[:5]
    after_1 = finished()

    # --- driver 2: --resume, SIGTERM -------------------------------------------------------------
    log = tmp_path / "driver2.log"
    proc = _driver(args + ["--resume"], log)
    try:
        wait_for(proc, log, in_next_trial(after_1), "trial 3")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
    assert rc == 130 and "--resume" in log.read_text(), log.read_text()[-3000:]
    assert not (exp / "driver.lock").exists()  # a graceful stop releases the experiment
    after_2 = finished()
    assert all(after_2[k] == n for k, n in after_1.items())  # trial 1 was not re-run

    # --- driver 3: --resume, SIGKILL mid-trial ---------------------------------------------------
    log = tmp_path / "driver3.log"
    proc = _driver(args + ["--resume"], log)
    try:
        wait_for(proc, log, in_next_trial(after_2), "trial 4")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    during = pd.read_parquet(exp / "trials.parquet")
    assert not during.duplicated(["trial_id", "epoch"]).any() and len(during) >= 9  # the three finished trials
    stale = json.loads((exp / "driver.lock").read_text())  # SIGKILL: no release, but no lock either
    assert stale["pid"] == proc.pid and "--resume" in stale["command"]

    # --- in-process --resume completes the experiment ---------------------------------------------
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert (f"note: the previous driver (pid {proc.pid} on host {socket.gethostname()}, started "
            in capsys.readouterr().err)  # ... "ended without releasing the lock; taken over"
    assert not (exp / "driver.lock").exists()
    table = pd.read_parquet(exp / "trials.parquet")
    assert table.trial_id.nunique() == 4 and set(table.status) == {"completed"}
    assert not table.duplicated(["trial_id", "epoch"]).any() and len(table) == 12
    assert {k: n for k, n in finished().items() if k in after_2} == after_2  # completed trials not re-run
    assert all([r["epoch"] for r in reports(search_dir / k)] == [1, 2, 3] for k in after_2)
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) >= 4
    meta = json.loads((exp / "experiment.json").read_text())
    assert len(meta["commands"]) == 4 and meta["search"]["num_samples"] == 4


def test_resumed_searcher_ignores_reports_of_trials_its_storage_already_finished(tmp_path):
    """The race behind a SIGKILLed driver: the Optuna database recorded a trial as COMPLETE, Tune's
    older snapshot still had it running, so the restored sweep re-reports it. Plain OptunaSearch
    raises (and aborts the sweep); ours keeps the database's record."""
    import functools
    from ray.tune.search.optuna import OptunaSearch
    from study.spaces import define_by_run
    from study.sweep import DurableOptunaSearch
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    space = {"lr": {"dist": "loguniform", "low": 1e-4, "high": 1e-2}}
    for cls, name in ((OptunaSearch, "plain"), (DurableOptunaSearch, "ours")):
        searcher = cls(space=functools.partial(define_by_run, space), metric="val_loss", mode="min",
                       sampler=optuna.samplers.TPESampler(seed=0), study_name=name,
                       storage=optuna.storages.RDBStorage(storage))
        assert "lr" in searcher.suggest("t1")
        searcher.on_trial_result("t1", {"val_loss": 1.0, "training_iteration": 1})
        # another process (the killed driver) finished the trial in the database
        study = optuna.load_study(study_name=name, storage=storage)
        study.tell(study.trials[0].number, 0.9)
        again = {"val_loss": 0.95, "training_iteration": 2}
        if cls is OptunaSearch:
            with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
                searcher.on_trial_result("t1", again)
        else:
            searcher.on_trial_result("t1", again)
            searcher.on_trial_complete("t1", again)
            t = optuna.load_study(study_name=name, storage=storage).trials[0]
            assert t.state == optuna.trial.TrialState.COMPLETE and t.value == 0.9
