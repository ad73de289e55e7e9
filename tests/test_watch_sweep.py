"""Watching a sweep as a user does: ``python -m study.run --prometheus`` in its own process, with
its own local Ray cluster and Ray's token auth on (RAY_AUTH_MODE unset and a fresh HOME: Ray
creates ~/.ray/auth_token there). While the trials wait at their last epoch
(REGSTUDY_FAULT=hold@2), a headless Chromium opens the printed dashboard URL and gets past the
token prompt the way the printed line says, and the live Prometheus answers; after the sweep, the
experiment's Prometheus data (reopened) holds the trial table's final epochs and status counts.
One sweep for the module; the tests assert on what it recorded."""
from __future__ import annotations

import asyncio
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

import chromium
from study import prometheus
from study.ray_dashboard import PROMPT
from study.ray_metrics import TRIAL_METRICS, exported_name
from study.trial_table import status_counts

NAME, EPOCHS, TRIALS = "watch", 2, 2
START_LINE = re.compile(r"^Ray dashboard: (http://\S+) \(at its \"" + PROMPT + r"\" prompt, paste what `([^`]+)` prints\)$")


@dataclass
class Watched:
    rc: int
    out: list[str]
    err: str
    exp: Path
    env: dict
    start_line: str = ""
    token: str = ""
    prometheus_url: str = ""
    live: dict = field(default_factory=dict)  # query -> result while the trials were held
    final: dict = field(default_factory=dict)  # query -> result of the reopened data
    browser: dict = field(default_factory=dict)


def _read_lines(stream, out: list[str]) -> None:
    for line in stream:
        out.append(line.rstrip("\n"))


def _wait_line(out: list[str], prefix: str, proc, timeout_s: float, containing: str = "") -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        hit = next((ln for ln in list(out) if ln.startswith(prefix) and containing in ln), None)
        if hit or proc.poll() is not None:
            return hit or ""
        time.sleep(0.2)
    return ""


def _live_gauges(url: str, timeout_s: float) -> dict:
    """The sweep's gauges as the running Prometheus has them, once it has scraped both sides."""
    queries = {q: f'{exported_name(q)}{{experiment="{NAME}"}}' for q in ("trial_epoch", "trials", "epochs_planned")}
    deadline = time.monotonic() + timeout_s
    result = {}
    while time.monotonic() < deadline:
        result = {q: prometheus.query(url, expr) for q, expr in queries.items()}
        if all(result.values()):
            break
        time.sleep(1)
    return result


async def _look_at_dashboard(exe: str, url: str, token: str, shot: Path) -> dict:
    async with chromium.page(exe) as page:
        await page.goto(url)
        before = await page.wait_text(lambda t: PROMPT in t)
        await page.evaluate("document.querySelector('input[type=password]').focus()")
        await page.type(token)
        await page.press("Enter", 13)
        # (the dashboard sets its cookie, reloads, and renders without the dialog)
        await page.wait_text(lambda t: PROMPT not in t and "Overview" in t, timeout_s=30)
        await page.goto(url.rstrip("/") + "/#/jobs")
        jobs = await page.wait_text(lambda t: "study.run" in t and PROMPT not in t)
        await page.screenshot(shot)
        return {"before": before, "jobs": jobs, "screenshot": shot}


def _final_gauges(data_dir: Path) -> dict:
    server = prometheus.start(prometheus.binary(), data_dir, prometheus.free_port(None), config=None)
    try:
        names = [f"trial_{m}" for m in TRIAL_METRICS] + ["trials", "best_val_loss", "epochs_done", "epochs_planned"]
        return {n: server.query(f'last_over_time({exported_name(n)}{{experiment="{NAME}"}}[1h])') for n in names}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def watched(tmp_path_factory, tiny_zip) -> Watched:
    root = tmp_path_factory.mktemp("watch")
    results, home = root / "results", root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # Ray's default: token auth
    spec = root / "faults"  # (study.faults: the trials hold at their last epoch while it says so)
    spec.write_text(f"hold@{EPOCHS}")
    ray_tmp = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # (short: Ray's socket paths have a length limit)
    env.update(HOME=str(home), RAY_TMPDIR=ray_tmp, REGSTUDY_FAULT=f"@{spec}",
               REGSTUDY_OFFLINE="1", REGSTUDY_CACHE=str(root / "cache"), PYTHONUNBUFFERED="1")
    with_prometheus = prometheus.binary() is not None
    cmd = [sys.executable, "-m", "study.run", "--space", "none", "--data", str(tiny_zip), "--classes", "4",
           "--max-epochs", str(EPOCHS), "--set", "batch_size=16", "--num-samples", str(TRIALS), "--grace-period", "1",
           "--num-cpus", "2", "--name", NAME, "--results-dir", str(results), "--table-refresh-s", "0"]
    cmd += ["--prometheus"] if with_prometheus else []
    out: list[str] = []
    err_file = root / "stderr"
    with open(err_file, "w") as err:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, out), daemon=True)
    reader.start()
    w = Watched(rc=-1, out=out, err="", exp=results / NAME, env=env)
    try:
        w.start_line = _wait_line(out, "Ray dashboard:", proc, 180)
        m = START_LINE.match(w.start_line)
        if m:
            w.token = subprocess.run(shlex.split(m.group(2)), env=env, capture_output=True, text=True,
                                     timeout=60).stdout.strip()
        if with_prometheus:
            line = _wait_line(out, "Prometheus: http", proc, 60)
            w.prometheus_url = line.split()[1] if line else ""
            if w.prometheus_url:
                w.live = _live_gauges(w.prometheus_url, timeout_s=90)
        exe = chromium.binary()
        if exe and m and w.token:
            w.browser = asyncio.run(_look_at_dashboard(exe, m.group(1), w.token, root / "dashboard-jobs.png"))
    finally:
        spec.write_text("")
        try:
            w.rc = proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            w.rc = proc.wait()
        reader.join(timeout=10)
        w.err = err_file.read_text()
        shutil.rmtree(ray_tmp, ignore_errors=True)  # (the driver's cluster is gone with it)
    if with_prometheus and (w.exp / prometheus.DATA_DIR).is_dir():
        w.final = _final_gauges(w.exp / prometheus.DATA_DIR)
    return w


def final_rows(w: Watched) -> pd.DataFrame:
    table = pd.read_parquet(w.exp / "trials.parquet")
    return table.sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")


def by_label(result: list[dict], label: str) -> dict[str, float]:
    out = {}
    for r in result:
        assert r["metric"][label] not in out, f"two series for {label}={r['metric'][label]}"
        out[r["metric"][label]] = float(r["value"][1])
    return out


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_sweep_runs_and_the_start_line_names_the_token_command(watched):
    w = watched
    assert w.rc == 0, w.err[-3000:]
    assert START_LINE.match(w.start_line), w.start_line
    assert len(w.token) >= 16  # what `ray get-auth-token` printed, with this HOME
    assert (Path(w.env["HOME"]) / ".ray" / "auth_token").read_text().strip() == w.token
    # the token is in no file the sweep keeps, nor in what it printed
    assert w.token not in "\n".join(w.out) and w.token not in w.err
    for f in w.exp.rglob("*"):
        if f.is_file() and f.stat().st_size < 50_000_000:
            assert w.token.encode() not in f.read_bytes(), f


def test_dashboard_opens_past_the_token_prompt_on_the_jobs_page(watched):
    if chromium.binary() is None:
        pytest.skip(f"no Chromium binary ({', '.join(chromium.NAMES)}): install Debian's chromium package")
    b = watched.browser
    assert b, "the dashboard was not reached"
    assert PROMPT in b["before"]  # auth is on: the first page asks for the token
    assert PROMPT not in b["jobs"]
    assert "Job List" in b["jobs"] and "RUNNING" in b["jobs"]
    assert "-m study.run --space none" in b["jobs"] and f"--name {NAME}" in b["jobs"]  # the sweep's driver
    assert b["screenshot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b["screenshot"].stat().st_size > 10_000


def needs_prometheus():
    if prometheus.binary() is None:
        pytest.skip("no prometheus binary on PATH: install Debian's prometheus package")


def test_prometheus_scraped_the_sweeps_gauges_while_it_ran(watched):
    needs_prometheus()
    w = watched
    assert w.prometheus_url.startswith("http://127.0.0.1:")
    assert w.live["trial_epoch"] and w.live["trials"], w.live
    trials = {r["metric"]["trial"] for r in w.live["trial_epoch"]}
    assert trials <= set(final_rows(w).index)
    assert by_label(w.live["epochs_planned"], "phase") == {"search": TRIALS * EPOCHS}
    assert any(ln.startswith("Prometheus stopped") for ln in w.out)
    with pytest.raises(OSError):  # stopped with the sweep
        urllib.request.urlopen(w.prometheus_url + "/-/ready", timeout=5)


def test_prometheus_last_values_equal_the_trial_tables_final_epochs(watched):
    needs_prometheus()
    final, rows = watched.final, final_rows(watched)
    assert len(rows) == TRIALS
    for m in TRIAL_METRICS:
        got = by_label(final[f"trial_{m}"], "trial")
        assert set(got) == set(rows.index), m
        for trial, value in got.items():
            assert same(value, float(rows.loc[trial, m])), (m, trial, value, rows.loc[trial, m])
    for r in final["trial_val_loss"]:
        assert r["metric"]["technique"] == rows.loc[r["metric"]["trial"], "regularizer"]
        assert r["metric"]["phase"] == "search"


def test_prometheus_status_counts_and_progress_equal_the_tables(watched):
    needs_prometheus()
    final = watched.final
    table = pd.read_parquet(watched.exp / "trials.parquet")
    counts = {k: int(v) for k, v in by_label(final["trials"], "status").items() if v}
    assert counts == status_counts(table)
    search = table[table.phase == "search"]
    best = search[search.val_loss.notna()].groupby("regularizer").val_loss.min()
    assert by_label(final["best_val_loss"], "technique") == best.to_dict()
    assert by_label(final["epochs_done"], "phase") == {"search": search.groupby("trial_id").epoch.max().sum()}
    assert by_label(final["epochs_planned"], "phase") == {"search": TRIALS * EPOCHS}


def test_an_interrupted_sweep_stops_its_prometheus(tmp_path, tiny_zip):
    """Ctrl-C (SIGINT) while a trial runs: exit 130, and Prometheus is stopped with it (at once,
    without the final scrape)."""
    needs_prometheus()
    spec = tmp_path / "faults"
    spec.write_text("hold@1")
    env = {**os.environ, "REGSTUDY_FAULT": f"@{spec}", "REGSTUDY_OFFLINE": "1",
           "REGSTUDY_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "study.run", "--space", "none", "--data", str(tiny_zip), "--classes", "4",
           "--max-epochs", "1", "--set", "batch_size=16", "--num-samples", "1", "--num-cpus", "1", "--name", "int",
           "--results-dir", str(tmp_path / "results"), "--prometheus", "--status-every-s", "1"]
    out: list[str] = []
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, out), daemon=True)
    reader.start()
    try:
        url = _wait_line(out, "Prometheus: http", proc, 180).split()[1]
        assert _wait_line(out, "[search ", proc, 120, containing=" 1 running")  # (the status line)
        assert urllib.request.urlopen(url + "/-/ready", timeout=5).status == 200
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    finally:
        spec.write_text("")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    assert rc == 130, "\n".join(out[-30:])
    assert any(ln.startswith("Prometheus stopped") for ln in out)
    assert not any("waiting for its last scrape" in ln for ln in out)
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/-/ready", timeout=5)
