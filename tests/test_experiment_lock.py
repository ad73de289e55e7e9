"""One driver per experiment: a second driver (a new run, --resume, --confirm-only) on a running
experiment exits 2 naming the holder, before it starts anything; the lock of a driver that died
is taken over; a lock recorded by another host needs --break-lock. (A SIGKILLed driver followed
by --resume through the whole command: tests/test_faults.py.)"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from study import experiment_lock
from study.experiment_lock import LOCK_FILE, LockError, acquire

HERE = socket.gethostname()


def _popen(args: list[str], log: Path, **env) -> subprocess.Popen:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "REGSTUDY_OFFLINE": "1", **env}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "study.run", *args], env=env, stdout=out,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_second_driver_on_a_running_experiment_exits_2_naming_the_holder(tiny_zip, tmp_path, cache_dir):
    """The issue's case: while `--space l2_dropout --num-samples 4 --max-epochs 3 --name race`
    runs, the same experiment as a new run, with --resume and with --confirm-only: each exits 2
    at once with one line naming the running driver (no Ray started, nothing written); the
    analysis reads the running experiment; the first driver ends with its 4 trials and nothing else."""
    results = tmp_path / "results"
    exp = results / "race"
    common = ["--data", str(tiny_zip), "--classes", "4", "--set", "batch_size=16", "--name", "race",
              "--results-dir", str(results)]
    new = ["--space", "l2_dropout", "--num-samples", "4", "--max-epochs", "3", *common]
    log = tmp_path / "first.log"
    # (2 s more per epoch: the first driver is still running when the others have answered)
    first = _popen(new + ["--max-concurrent", "2", "--num-cpus", "2", "--grace-period", "3",
                          "--table-refresh-s", "0"], log, REGSTUDY_FAULT="sleep@2")
    try:
        deadline = time.time() + 240
        while not (exp / "trials.parquet").exists():  # the first epoch is in: the sweep runs
            assert first.poll() is None, log.read_text()[-3000:] + first.stderr.read()
            assert time.time() < deadline, "the first driver reported nothing in time"
            time.sleep(0.2)
        holder = experiment_lock.holder(exp)
        assert holder is not None and holder.pid == first.pid and holder.host == HERE

        second_ray = tmp_path / "ray-second"  # a Ray started by a second driver would create it
        seconds = {name: _popen(args, tmp_path / f"{name}.log", RAY_TMPDIR=str(second_ray)) for name, args in (
            ("new", new), ("resume", common + ["--resume"]),
            ("confirm", common + ["--confirm-only", "--confirm-seeds", "2"]))}
        answers = {name: (p.wait(timeout=120), p.stderr.read(), (tmp_path / f"{name}.log").read_text())
                   for name, p in seconds.items()}
        assert first.poll() is None, "the first driver ended before the others answered: make its epochs slower"
        for name, (rc, err, out) in answers.items():
            assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1, (name, rc, err, out)
            assert err.startswith(f"error: experiment 'race' is in use by another driver: pid {first.pid} on "
                                  f"host {HERE}, started 20"), (name, err)
            assert "--name race" in err and f"kill {first.pid}" in err and "--resume" in err, (name, err)
        assert not second_ray.exists()
        assert experiment_lock.holder(exp).pid == first.pid  # its lock file is untouched

        # read-only access goes on while it runs: the table and the study, as the analysis reads them
        from analysis.loading import load_study, load_trials
        assert len(load_trials(exp)) >= 1 and load_study(exp) is not None
        rc = first.wait(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    text = log.read_text()
    assert rc == 0, text[-3000:] + first.stderr.read()
    table = pd.read_parquet(exp / "trials.parquet")
    assert table.trial_id.nunique() == 4 and len(table) == 12 and set(table.status) == {"completed"}
    assert len(list((exp / "ray" / "search").glob("trial_*"))) == 4
    study = optuna.load_study(study_name="race", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    best = text.split("best configuration per regularizer", 1)[1].split("[search-", 1)[1].split("]")[0]
    assert f"search-{best}" in set(table.trial_id)  # the printed best is in the table
    assert len(json.loads((exp / "experiment.json").read_text())["commands"]) == 1
    assert not (exp / LOCK_FILE).exists()


_HOLD = textwrap.dedent("""
    import json, os, sys, time
    from study.experiment_lock import acquire
    lock = acquire(sys.argv[1], "python -m study.run --name x")
    if len(sys.argv) > 2:  # pretend to be a driver on another host
        os.pwrite(lock.fd, (json.dumps({"pid": 4242, "host": sys.argv[2], "start_time": "2026-01-01T00:00:00",
                                        "command": "python -m study.run --name x"}) + " " * 64).encode(), 0)
    print("held", flush=True)
    sys.stdin.readline()  # until the test says
    lock.release()
""")


def _holder(exp: Path, *host: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(exp), *host], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    assert p.stdout.readline().strip() == "held"
    return p


def test_lock_live_dead_and_other_host(tmp_path):
    exp = tmp_path / "results" / "x"
    # a live holder on this host: refused, named; --break-lock cannot override a driver it can see
    p = _holder(exp)
    try:
        for brk in (False, True):
            with pytest.raises(LockError, match=rf"in use by another driver: pid {p.pid} on host {HERE}, "
                                                rf"started .* \(python -m study.run --name x\); .*kill {p.pid}"):
                acquire(exp, "me", break_lock=brk)
        assert experiment_lock.holder(exp).pid == p.pid
    finally:
        p.kill()  # SIGKILL: no release, the file stays; the kernel drops the lock
        p.wait()
    assert json.loads((exp / LOCK_FILE).read_text())["pid"] == p.pid
    assert experiment_lock.holder(exp) is None
    with acquire(exp, "me") as lock:  # a dead holder's lock is taken over
        assert lock.previous.pid == p.pid and not lock.broken
        assert "ended without releasing the lock; taken over" in lock.note()
        assert json.loads((exp / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert list(exp.iterdir()) == []  # released: the file is gone
    with acquire(tmp_path / "new" / "y", "me"):
        assert (tmp_path / "new" / "y" / LOCK_FILE).exists()
    assert not (tmp_path / "new").exists()  # release removes the directories acquire made, left empty

    # a lock file left by another host: this host cannot tell whether it runs -> --break-lock
    (exp / LOCK_FILE).write_text(json.dumps({"pid": 7, "host": "node7", "start_time": "2026-01-01T00:00:00",
                                             "command": "python -m study.run --name x"}))
    (exp / "experiment.json").write_text("{}")
    with pytest.raises(LockError, match="last run by pid 7 on host node7.*cannot tell.*--break-lock"):
        acquire(exp, "me")
    with acquire(exp, "me", break_lock=True) as lock:
        assert lock.broken and lock.previous.host == "node7" and "--break-lock: took the experiment" in lock.note()
    assert sorted(p.name for p in exp.iterdir()) == ["experiment.json"]  # the experiment stays

    # a live holder on another host (a shared filesystem): named; --break-lock replaces its file
    p = _holder(exp, "node8")
    try:
        with pytest.raises(LockError, match="pid 4242 on host node8.*if host node8 is down.*--break-lock"):
            acquire(exp, "me")
        lock = acquire(exp, "me", break_lock=True)
        assert lock.broken and lock.previous.host == "node8"
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(timeout=30) == 0  # the old holder releases: it leaves our file alone
        assert json.loads((exp / LOCK_FILE).read_text())["pid"] == os.getpid()
        lock.release()
    finally:
        p.kill()
    assert not (exp / LOCK_FILE).exists()
