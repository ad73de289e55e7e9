"""Where researchers look at a sweep (issue 15), all on ONE tiny sweep run through the Python API
(``study.sweep``): its live status line, optuna-dashboard's HTTP API, the trials' TensorBoard
event files, MLflow's tracking store, ``study.load``/``study.analyse``, and report.html in a
headless Chromium. Servers are started on 127.0.0.1 by the tests and stopped after."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

import chromium
import study
from study.config import ConfigError
from study.metrics import all_metrics

NAME, EPOCHS, TRIALS = "doors", 2, 3
STATUS = re.compile(r"^\[search \d+:\d\d elapsed(, ~\d+:\d\d left)?\] trials \d+ running, \d+ finished, "
                    r"\d+ stopped by ASHA, \d+ errored(, \d+ diverged)?(, \d+ pending)? \| epochs (\d+)/(\d+) \| "
                    r"best val_loss: (-|l2\+dropout \d+\.\d{4})$")


@dataclass
class Swept:
    exp: Path
    table: pd.DataFrame
    out: str
    mlflow: str
    storage: str


@pytest.fixture(scope="module")
def swept(cluster, tiny_zip, tmp_path_factory) -> Swept:
    root = tmp_path_factory.mktemp("doors")
    os.environ["REGSTUDY_CACHE"] = str(root / "cache")
    # A user-given storage that another study shares: the dashboard shows every study in it
    storage = f"sqlite:///{root / 'shared-optuna.db'}"
    other = optuna.create_study(study_name="other", storage=storage)
    other.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    mlflow = f"sqlite:///{root / 'mlflow.db'}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        table = study.sweep("l2_dropout", data=tiny_zip, classes=4, max_epochs=EPOCHS, set={"batch_size": 16},
                            num_samples=TRIALS, grace_period=1, reduction_factor=2, max_concurrent=2,
                            name=NAME, results_dir=root / "results", optuna_storage=storage, mlflow=mlflow,
                            status_every_s=0.5)
    os.environ.pop("REGSTUDY_CACHE", None)
    return Swept(root / "results" / NAME, table, out.getvalue(), mlflow, storage)


def trial_rows(table: pd.DataFrame, tid: str) -> pd.DataFrame:
    return table[table.trial_id == tid].set_index("epoch").sort_index()


def epoch_metrics(rows: pd.DataFrame) -> list[str]:
    """The per-epoch metrics the table has values of for this trial."""
    return [m for m in all_metrics() if m in rows and rows[m].notna().any()]


# ------------------------------------------------------------------------------ the Python API
def test_api_sweep_load_and_status_line(swept):
    table, record, studies = study.load(swept.exp)
    pd.testing.assert_frame_equal(swept.table, table)
    assert table.trial_id.nunique() == TRIALS and set(table.phase) == {"search"}
    assert record["name"] == NAME and record["optuna_storage"] == swept.storage
    assert list(studies) == [NAME]  # (the experiment's study, not the other one in the same database)
    assert len(studies[NAME].trials) == TRIALS
    assert {t.number for t in studies[NAME].trials} == set(range(TRIALS))
    # the live status line: the phase, trials by status, epochs against the plan, best per technique
    lines = [ln for ln in swept.out.splitlines() if ln.startswith("[search ")]
    assert lines and all(STATUS.match(ln) for ln in lines), lines
    assert {STATUS.match(ln).group(5) for ln in lines} == {str(TRIALS * EPOCHS)}
    done = [int(STATUS.match(ln).group(4)) for ln in lines]
    assert done == sorted(done) and done[-1] <= table.groupby("trial_id").epoch.max().sum()
    assert "Ray dashboard" in swept.out and "best configuration per regularizer" in swept.out
    # `study.sweep` stays the module that Tune's saved state names (pickles restore from it)
    import study.sweep as module
    assert callable(study.sweep) and study.sweep is module and module.trial_dirname.__module__ == "study.sweep"
    assert pickle.loads(pickle.dumps(module.SweepSettings("x", Path("/r"), 1))).name == "x"
    with pytest.raises(TypeError, match="unknown option 'epochs'.*max_epochs"):
        study.sweep("l2_dropout", epochs=3)
    with pytest.raises(study.api.SweepError, match="unknown space 'nope'") as e:
        study.sweep("nope", results_dir=swept.exp.parent)
    assert e.value.code == 2


def test_quiet_prints_errors_and_the_final_summary_only(swept, tiny_zip, tmp_path, cache_dir, capfd):
    """(After the module's sweep: the same cluster and data, one trial of one epoch.)"""
    capfd.readouterr()
    study.sweep("l2_dropout", data=tiny_zip, classes=4, max_epochs=1, set={"batch_size": 16}, num_samples=1,
                name="q", results_dir=tmp_path, quiet=True, status_every_s=0.01, cpus_per_trial=1)
    out = capfd.readouterr().out.splitlines()
    assert out[0].startswith("search trials by status: {'completed': 1}"), out
    assert out[-2].startswith("trial table: ") and not any(ln.startswith("[search") for ln in out)
    assert out[-1].startswith("disk used by the experiment: ")
    assert len(out) == 5  # status counts, "best configuration ...", its one line, the table's path, the disk


def test_analyse(swept):
    gaps = study.analyse(swept.exp, n_boot=200, figures=False)
    written = pd.read_csv(swept.exp / "analysis" / "gaps.csv")
    assert list(gaps.regularizer) == list(written.regularizer) == ["l2+dropout"]
    assert gaps.iloc[0]["n_seeds"] == written.iloc[0]["n_seeds"] >= 1
    assert (swept.exp / "analysis" / "table1.md").exists()


# ------------------------------------------------------------------------------ optuna-dashboard
def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def test_optuna_dashboard(swept):
    env = {k: v for k, v in os.environ.items() if k != "REGSTUDY_OPTUNA_STORAGE"}
    proc = subprocess.Popen([sys.executable, "-m", "study.dashboard", str(swept.exp)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline().strip()
        m = re.fullmatch(r"optuna-dashboard: (http://127\.0\.0\.1:(\d+)/dashboard/) \(storage (\S+); Ctrl-C stops it\)",
                         line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")
        assert int(m.group(2)) > 0 and m.group(3) == swept.storage
        base = m.group(1).removesuffix("dashboard/")
        studies = {s["study_name"]: s for s in _get(base + "api/studies")["study_summaries"]}
        assert set(studies) == {NAME, "other"}  # every study of the storage
        detail = _get(f"{base}api/studies/{studies[NAME]['study_id']}")
        search = swept.table[swept.table.phase == "search"]
        assert len(detail["trials"]) == search.trial_id.nunique() == TRIALS
        # the same trials: the table's proposed learning rates are the dashboard's
        lrs = sorted(round(float(p["param_external_value"]), 10) for t in detail["trials"] for p in t["params"]
                     if p["name"] == "lr")
        assert lrs == sorted(round(v, 10) for v in search.drop_duplicates("trial_id").lr)
        assert len(_get(f"{base}api/studies/{studies['other']['study_id']}")["trials"]) == 2
        with urllib.request.urlopen(m.group(1), timeout=30) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        proc.send_signal(signal.SIGINT)  # (Ctrl-C)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert rc == 0 and proc.stdout.read().strip() == "optuna-dashboard stopped"


def test_dashboard_never_prints_a_password(tmp_path, capsys, monkeypatch):
    """A storage recorded with its password as *** takes the URL from the environment; what is
    printed (here: the storage cannot be reached) shows *** only."""
    from study import cli, dashboard

    exp = tmp_path / "pg"
    exp.mkdir()
    (exp / "experiment.json").write_text(json.dumps(
        {"name": "pg", "optuna_study": "pg", "optuna_storage": "postgresql://me:***@127.0.0.1:1/optuna"}))
    assert cli.run(lambda: dashboard.main([str(exp)])) == 2
    assert "REGSTUDY_OPTUNA_STORAGE" in capsys.readouterr().err
    monkeypatch.setenv("REGSTUDY_OPTUNA_STORAGE", "postgresql://me:s3cret@127.0.0.1:1/optuna")
    assert cli.run(lambda: dashboard.main([str(exp)])) == 2
    captured = capsys.readouterr()
    assert "s3cret" not in captured.out + captured.err and "me:***@127.0.0.1:1" in captured.err
    assert cli.run(lambda: dashboard.main([str(tmp_path)])) == 2
    assert "no experiment.json" in capsys.readouterr().err


# ------------------------------------------------------------------------------ TensorBoard
def test_tensorboard_event_files(swept):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    checked = 0
    for tid, rows in ((t, trial_rows(swept.table, t)) for t in swept.table.trial_id.unique()):
        trial_dir = swept.exp / "ray" / "search" / f"trial_{tid.removeprefix('search-')}"
        assert list(trial_dir.glob("events.out.tfevents.*")), trial_dir
        acc = EventAccumulator(str(trial_dir), size_guidance={"scalars": 0})
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        step_epoch = {e.step: int(e.value) for e in acc.Scalars("ray/tune/epoch")}
        assert sorted(step_epoch.values()) == list(rows.index)
        for metric in epoch_metrics(rows):
            assert f"ray/tune/{metric}" in tags, (tid, metric)
            logged = {step_epoch[e.step]: e.value for e in acc.Scalars(f"ray/tune/{metric}")}
            want = rows[metric].dropna().astype(float)
            assert set(logged) == set(want.index), (tid, metric)
            for epoch, value in want.items():
                assert logged[epoch] == pytest.approx(value, rel=1e-6, abs=1e-7), (tid, metric, epoch)
                checked += 1
    assert checked >= TRIALS * len(("train_loss", "val_loss", "gap_loss"))


# ------------------------------------------------------------------------------ MLflow
def test_mlflow_runs(swept):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=swept.mlflow)
    exp = client.get_experiment_by_name(NAME)
    runs = {r.data.tags["trial_id"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {t.removeprefix("search-") for t in swept.table.trial_id.unique()}
    for tid, run in runs.items():
        rows = trial_rows(swept.table, f"search-{tid}")
        last = rows.iloc[-1]
        assert {k: run.data.tags.get(k) for k in ("experiment", "phase", "technique", "status")} == \
            {"experiment": NAME, "phase": "search", "technique": "l2+dropout", "status": last.status}
        assert run.info.status == ("FAILED" if last.status == "errored" else "FINISHED")
        assert float(run.data.params["lr"]) == pytest.approx(last.lr, rel=1e-9)
        assert run.data.params["batch_size"] == "16" and run.data.params["epochs"] == str(EPOCHS)
        for metric in epoch_metrics(rows):
            hist = sorted(client.get_metric_history(run.info.run_id, metric), key=lambda m: m.timestamp)
            logged = {m.step: m.value for m in hist}  # (a repeated epoch: the latest value)
            want = rows[metric].dropna().astype(float)
            assert set(logged) == set(want.index), (tid, metric)
            assert np.allclose([logged[e] for e in want.index], want.to_numpy(), rtol=1e-9, atol=0), (tid, metric)


def test_mlflow_uri_password_is_redacted(monkeypatch):
    from study.mlflow_log import TrialRuns

    uri = "postgresql://me:s3cret@db.example:5432/mlflow"
    from ray import cloudpickle  # (what Tune writes tuner.pkl with)

    cb = TrialRuns(uri, "x", "search", {"epochs": 2})
    blob = cloudpickle.dumps(cb)
    assert b"s3cret" not in blob and b"me:***@db.example" in blob
    assert cloudpickle.loads(blob).tracking_uri == uri  # (this process remembers it)
    monkeypatch.setattr("study.mlflow_log._URIS.known", {})  # (a later driver: from the environment)
    with pytest.raises(ConfigError, match="REGSTUDY_MLFLOW"):
        cloudpickle.loads(blob)
    monkeypatch.setenv("REGSTUDY_MLFLOW", uri)
    assert cloudpickle.loads(blob).tracking_uri == uri
    from study.sweep import SweepSettings
    blob = pickle.dumps(SweepSettings("x", Path("/r"), 1, mlflow=uri))
    assert b"s3cret" not in blob


# ------------------------------------------------------------------------------ report.html in Chromium
async def _look_at_report(exe: str, url: str, shot: Path, full: Path) -> dict:
    async with chromium.page(exe, width=1400, height=900) as page:
        await page.call("Runtime.enable")
        await page.call("Log.enable")
        await page.goto(url)
        await page.wait_text(lambda t: "Table 1" in t or "Conclusions" in t or len(t) > 500, timeout_s=30)
        deadline = time.monotonic() + 30
        while not await page.evaluate("document.readyState === 'complete' && "
                                      "[...document.images].every(i => i.complete)") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        images = await page.evaluate("[...document.images].map(i => ({src: i.src.slice(0, 40), w: i.naturalWidth, "
                                     "h: i.naturalHeight, shown: i.getBoundingClientRect().width}))")
        tables = await page.evaluate("[...document.querySelectorAll('table')].map(t => t.rows.length)")
        overflow = await page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        toc = await page.evaluate("[...document.querySelectorAll('nav a[href^=\"#\"]')].map(a => "
                                  "!!document.getElementById(a.getAttribute('href').slice(1)))")
        await page.screenshot(shot)
        metrics = await page.call("Page.getLayoutMetrics")
        size = metrics["cssContentSize"]
        await page.call("Emulation.setDeviceMetricsOverride", width=1400, height=int(size["height"]),
                        deviceScaleFactor=1, mobile=False)
        await page.screenshot(full)
        return {"images": images, "tables": tables, "errors": page.console_errors(), "overflow": overflow,
                "toc": toc}


def test_report_in_chromium(swept, tmp_path):
    from PIL import Image

    from analysis.report import main as report_main

    exe = chromium.binary()
    if exe is None:
        pytest.skip("no chromium (Debian's `chromium` package; .ci/run installs it)")
    assert report_main([str(swept.exp), "--n-boot", "200"]) == 0
    html = swept.exp / "analysis" / "report.html"
    shots = Path(os.environ.get("REGSTUDY_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    seen = asyncio.run(_look_at_report(exe, html.as_uri(), shots / "report.png", shots / "report-full.png"))
    assert seen["images"] and all(i["w"] > 0 and i["h"] > 0 for i in seen["images"]), seen["images"]
    assert all(0 < i["shown"] <= 1400 for i in seen["images"])  # (no figure wider than the window)
    assert len(seen["tables"]) >= 2 and all(n >= 2 for n in seen["tables"])  # a header and rows
    assert seen["errors"] == []
    assert seen["overflow"] <= 0  # (nothing wider than the page: wide tables scroll in their box)
    assert seen["toc"] and all(seen["toc"])  # a contents list whose links all land
    for shot in (shots / "report.png", shots / "report-full.png"):
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert pixels.shape[1] == 1400 and pixels.std() > 10, shot  # not blank
        assert (pixels < 128).mean() > 0.005, shot  # some dark ink: text and figures
