"""The Optuna study in the storages other than the default SQLite: a real PostgreSQL server on
127.0.0.1 (password authentication) and Optuna's journal file. Each: a sweep with 2 trials at
once, the table against the study, an interrupted driver and --resume; for PostgreSQL also the
confirmation phase, the analysis' importances read from the server, and a password that shows
up in no output and no file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

import pgserver
from study import optuna_storage, sweep
from study.run import main

PASSWORD = "s3cr3t:p@ss/w0rd"  # needs percent-encoding in a URL: ':', '@' and '/' in it
SECRET = "s3cr3t"  # in the raw and in the percent-encoded form


@pytest.fixture(scope="module")
def pg_url():
    if pgserver.binaries() is None:
        if os.environ.get("CI"):  # .ci/run installs them: a skip there would hide a broken install
            pytest.fail("PostgreSQL server binaries not found in CI (.ci/run installs Debian's postgresql)")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin: "
                    "apt-get install postgresql (.ci/run does)")
    with pgserver.server(password=PASSWORD) as url:
        yield url


def _args(tiny_zip: Path, results: Path, name: str, samples: int = 3) -> list[str]:
    return ["--space", "l2_dropout", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", "2",
            "--set", "batch_size=16", "--name", name, "--results-dir", str(results), "--num-samples", str(samples),
            "--max-concurrent", "2", "--grace-period", "2", "--table-refresh-s", "0"]


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def _table_matches_study(table: pd.DataFrame, study: optuna.Study, n: int) -> None:
    """Each search trial of the table is a COMPLETE trial of the study, with its parameters."""
    search = table[table.phase == "search"].drop_duplicates("trial_id")
    assert len(search) == n and set(search.status) == {"completed"}
    proposed = {tuple(round(t.params[k], 12) for k in ("lr", "l2", "dropout")) for t in _complete(study)}
    ran = {tuple(round(r[k], 12) for k in ("lr", "l2", "dropout")) for _, r in search.iterrows()}
    assert ran <= proposed, (ran, proposed)


def _overlapping(trials: list[optuna.trial.FrozenTrial]) -> bool:
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    return any(b[0] < a[1] for a, b in zip(spans, spans[1:]))


def test_postgresql_sweep_sigkill_resume_confirm_analysis_and_no_password(
        pg_url, tiny_zip, tmp_path, cache_dir, capsys, caplog, monkeypatch, request):
    """Driver 1 (the URL in REGSTUDY_OPTUNA_STORAGE, 2 trials at once) is SIGKILLed once a trial
    has completed in the database; --resume (the URL from the variable again) finishes the search
    and runs the confirmation; the analysis reads the importances from the server. The password
    is in no output and in no file under the experiment directory."""
    results = tmp_path / "results"
    exp = results / "pg"
    args = _args(tiny_zip, results, "pg")
    env = {**os.environ, "REGSTUDY_OPTUNA_STORAGE": pg_url, "RAY_AUTH_MODE": "disabled",
           "REGSTUDY_FAULT": "sleep@1"}  # (slow epochs: the kill lands mid-sweep)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    log = tmp_path / "driver1.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "study.run", *args, "--num-cpus", "2"], env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, "no trial completed in time:\n" + log.read_text()[-3000:]
            try:
                done = _complete(optuna.load_study(study_name="pg", storage=pg_url))
            except KeyError:  # the study is not created yet
                done = []
            if done:
                break
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(done) < 3, "the sweep ended before the kill"
    meta = json.loads((exp / "experiment.json").read_text())
    redacted = pg_url.split("//")[0] + "//regstudy:***@" + pg_url.split("@")[1]
    assert meta["optuna_storage"] == redacted

    # --resume without the variable cannot know the password: one line saying what to set
    monkeypatch.delenv("REGSTUDY_OPTUNA_STORAGE", raising=False)
    assert main(args + ["--resume"]) == 2
    err = capsys.readouterr().err
    assert f"the Optuna study is in {redacted}: set REGSTUDY_OPTUNA_STORAGE" in err, err

    request.getfixturevalue("cluster")
    monkeypatch.setenv("REGSTUDY_OPTUNA_STORAGE", pg_url)
    assert main(args + ["--resume", "--confirm-seeds", "2"]) == 0
    out, err = capsys.readouterr()
    assert f"Optuna study 'pg' in {redacted}" in out
    assert "ended without releasing the lock; taken over" in err  # (the killed driver's lock)
    table = pd.read_parquet(exp / "trials.parquet")
    study = optuna.load_study(study_name="pg", storage=pg_url)
    _table_matches_study(table, study, 3)
    assert _overlapping(_complete(study)), "the trials never ran at the same time"
    assert not table.duplicated(["phase", "trial_id", "epoch"]).any()
    conf = table[table.phase == "confirm"]
    assert sorted(conf.drop_duplicates("trial_id").seed) == [1, 2] and set(conf.status) == {"completed"}

    # the analysis: importances from the server (URL from the variable)
    from analysis.summarize import main as summarize
    assert summarize([str(exp), "--no-figures", "--n-boot", "200"]) == 0
    notes = json.loads((exp / "analysis" / "notes.json").read_text())
    assert notes["optuna_study_loaded"] is True
    imp = pd.read_csv(exp / "analysis" / "importances.csv")
    assert set(imp[imp.scope == "all trials"].param) == {"lr", "l2", "dropout"}
    assert (imp.n_trials >= 3).all()
    # in a fresh process without the variable: no study, and a warning saying what to set
    monkeypatch.delenv("REGSTUDY_OPTUNA_STORAGE")
    monkeypatch.setattr(optuna_storage._PASSWORDS, "known", {})  # (what this process was given)
    from analysis.loading import load_study
    assert load_study(exp) is None and "set REGSTUDY_OPTUNA_STORAGE" in caplog.text

    shown = log.read_text() + out + err + capsys.readouterr().out + caplog.text
    assert SECRET not in shown
    files = [p for p in results.rglob("*") if p.is_file()]
    assert len(files) > 30 and any(p.name == "tuner.pkl" for p in files)  # (Ray Tune's pickles too)
    leaked = [str(p.relative_to(results)) for p in files if SECRET.encode() in p.read_bytes()]
    assert not leaked, leaked


def test_journal_storage_sweep_table_interrupt_and_resume(cluster, tiny_zip, tmp_path, cache_dir, capsys,
                                                          monkeypatch):
    """journal:PATH: two trials at once; the driver is interrupted (SIGINT, as Ctrl-C) when the
    first trial completes; --resume (storage taken from experiment.json) completes the search,
    and the study in the journal file has each trial of the table."""
    journal = tmp_path / "shared" / "optuna.journal"
    results = tmp_path / "results"
    args = _args(tiny_zip, results, "j", samples=3)
    real = sweep.TableCallback.on_trial_complete
    calls = []

    def ctrl_c_after_first(self, *a, **k):
        real(self, *a, **k)
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # (inside tuner.fit: Tune's handler stops gracefully)

    monkeypatch.setattr(sweep.TableCallback, "on_trial_complete", ctrl_c_after_first)
    assert main(args + ["--optuna-storage", f"journal:{journal}"]) == 130
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(sweep.TableCallback, "on_trial_complete", real)
    meta = json.loads((results / "j" / "experiment.json").read_text())
    assert meta["optuna_storage"] == f"journal:{journal}"
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    first = _complete(optuna.load_study(study_name="j", storage=JournalStorage(JournalFileBackend(str(journal)))))
    assert 1 <= len(first) < 3

    assert main(args + ["--resume"]) == 0
    table = pd.read_parquet(results / "j" / "trials.parquet")
    study = optuna.load_study(study_name="j", storage=JournalStorage(JournalFileBackend(str(journal))))
    _table_matches_study(table, study, 3)
    assert _overlapping(_complete(study)), "the trials never ran at the same time"
    assert {t.number for t in first} <= {t.number for t in _complete(study)}  # the history was kept
    assert not table.duplicated(["trial_id", "epoch"]).any() and len(table) == 6


def test_storage_urls_recorded_without_password_and_continued_with_it(tmp_path, monkeypatch):
    """One rule for every storage URL: the spelling, what experiment.json records, and which URL a
    resumed experiment or the analysis opens (the password from the variable, never the record)."""
    from study.config import ConfigError
    url = "postgres://u:pw%40x@127.0.0.1:5/db"  # (libpq's scheme; SQLAlchemy says postgresql)
    assert optuna_storage.normalise(url) == "postgresql://u:pw%40x@127.0.0.1:5/db"
    assert optuna_storage.record(url) == "postgresql://u:***@127.0.0.1:5/db"
    assert optuna_storage.record(None) == "sqlite:///optuna.db"  # relative to the experiment dir
    monkeypatch.chdir(tmp_path)
    assert optuna_storage.record("journal:j/o.journal") == f"journal:{tmp_path}/j/o.journal"
    with pytest.raises(ConfigError, match="journal:PATH needs the path"):
        optuna_storage.normalise("journal:")
    exp = tmp_path / "e"
    assert optuna_storage.for_experiment("sqlite:///optuna.db", exp) == f"sqlite:///{exp}/optuna.db"
    recorded = optuna_storage.record(url)
    monkeypatch.setattr(optuna_storage._PASSWORDS, "known", {})
    monkeypatch.delenv("REGSTUDY_OPTUNA_STORAGE", raising=False)
    with pytest.raises(ConfigError, match=r"in postgresql://u:\*\*\*@127.0.0.1:5/db: set REGSTUDY_OPTUNA_STORAGE"):
        optuna_storage.for_experiment(recorded, exp)
    monkeypatch.setenv("REGSTUDY_OPTUNA_STORAGE", url)
    assert optuna_storage.for_experiment(recorded, exp) == "postgresql://u:pw%40x@127.0.0.1:5/db"
    assert optuna_storage.for_reading(recorded, exp) == "postgresql://u:pw%40x@127.0.0.1:5/db"
    with pytest.raises(ConfigError, match=r"--optuna-storage postgresql://u:\*\*\*@127.0.0.1:6/db: experiment 'e' "
                                          r"keeps its Optuna study in postgresql://u:\*\*\*@127.0.0.1:5/db"):
        optuna_storage.for_experiment(recorded, exp, "postgresql://u:pw@127.0.0.1:6/db")
    # the analysis of a SQLite experiment ignores a variable set for another experiment's server
    assert optuna_storage.for_reading("sqlite:///optuna.db", exp) == f"sqlite:///{exp}/optuna.db"
    with pytest.raises(ConfigError, match="did not record: give it again"):
        optuna_storage.for_experiment(optuna_storage.LEGACY_USER_GIVEN, exp)
