"""Prometheus for a sweep (``study.run --prometheus``): the ``prometheus`` binary (Debian's
package) on 127.0.0.1 with the config Ray generates for its session (file-based discovery of
every node's metrics endpoint), its data in the experiment directory (``prometheus/``), the
ready queries as graph links, and a clean stop.

Reopen the data of a finished sweep: :func:`start` with ``config=None`` (no scraping).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .ray_metrics import exported_name

BINARY = "prometheus"
INSTALL = ("--prometheus: the prometheus binary is not on PATH; install it (Debian/Ubuntu: "
           "sudo apt-get install prometheus; elsewhere: https://prometheus.io/download/)")
DEFAULT_PORT = 9090  # (Ray's dashboard and Grafana config look there unless told otherwise)
DATA_DIR = "prometheus"  # in the experiment directory
RAY_CONFIG = Path("metrics") / "prometheus" / "prometheus.yml"  # in Ray's session directory
START_TIMEOUT_S = 30.0


def _export_interval_s() -> float:
    """How often Ray exports metrics: metrics_report_interval_ms (10 s unless set; never under 1 s)."""
    try:
        return max(float(os.environ.get("RAY_metrics_report_interval_ms", "10000")), 1000.0) / 1000
    except ValueError:
        return 10.0


class PrometheusError(RuntimeError):
    """Prometheus cannot be started for this sweep (exit 2: nothing was written)."""


def binary() -> str | None:
    return shutil.which(BINARY)


def queries(experiment: str | None = None, phase: str = "search") -> dict[str, str]:
    """What to look at, as PromQL (``experiment``: only that experiment's series)."""
    sel = f'{{{f"experiment={json.dumps(experiment)}," if experiment else ""}phase="{phase}"}}'
    return {
        "best val_loss per technique": f"min by (technique) ({exported_name('best_val_loss')}{sel})",
        "trials by status": f"sum by (status) ({exported_name('trials')}{sel})",
        "epochs per minute": f"60 * sum(deriv({exported_name('epochs_done')}{sel}[5m]))",
    }


def graph_link(url: str, expr: str, range_input: str = "1h") -> str:
    return f"{url}/graph?" + urllib.parse.urlencode({"g0.expr": expr, "g0.tab": "0", "g0.range_input": range_input})


def free_port(preferred: int | None = DEFAULT_PORT) -> int:
    """``preferred`` if nothing listens there on 127.0.0.1, else a port the system picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (as Prometheus binds: TIME_WAIT is free)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise PrometheusError("--prometheus: no free port on 127.0.0.1")


def ray_config(wait_s: float = 15.0) -> Path:
    """Ray's generated config of the cluster this process is connected to (the dashboard writes
    it when it starts: only on the head node, and only when the dashboard runs)."""
    import ray

    ctx = ray.get_runtime_context()
    path = Path(ctx.get_temp_dir()) / ctx.get_session_name() / RAY_CONFIG
    deadline = time.monotonic() + wait_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    if not path.exists():
        raise PrometheusError(f"--prometheus: Ray's Prometheus config {path} is not there: it is written by the "
                              "Ray dashboard on the head node; run the driver there, with the dashboard on")
    return path


def _die_with_parent() -> None:
    # Prometheus runs in its own session (Ctrl-C in the terminal must not stop it before the
    # sweep's last scrape) but never outlives the driver, even a SIGKILLed one (Linux).
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def api(url: str, path: str, **params: str):
    """A call of Prometheus's HTTP API (``/api/v1/<path>``): its ``data``."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{url}/api/v1/{path}{query}", timeout=10) as r:
        doc = json.load(r)
    if doc.get("status") != "success":
        raise PrometheusError(f"{path}: {doc.get('error', doc)}")
    return doc["data"]


def query(url: str, expr: str) -> list[dict]:
    """An instant query's result: ``[{"metric": {labels}, "value": [time, "value"]}, ...]``."""
    return api(url, "query", query=expr)["result"]


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    data_dir: Path
    log: Path
    _tmp: list[str] = field(default_factory=list)

    def query(self, expr: str) -> list[dict]:
        return query(self.url, expr)

    def last_scrape(self, job: str = "ray") -> float | None:
        """When every target of ``job`` was last scraped (the oldest of them; None: no target)."""
        result = self.query(f'min(timestamp(up{{job="{job}"}}))')
        return float(result[0]["value"][1]) if result else None

    def wait_scraped(self, after: float, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                last = self.last_scrape()
            except (OSError, PrometheusError):
                last = None
            if last is not None and last >= after:
                return True
            time.sleep(0.5)
        return False

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for d in self._tmp:
            shutil.rmtree(d, ignore_errors=True)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _last_log_line(log: Path) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if "level=error" in ln] or lines
    return errors[-1][:300] if errors else ""


def start(exe: str, data_dir: Path, port: int, config: Path | None, log: Path | None = None) -> Server:
    """Start ``exe`` on 127.0.0.1:``port`` (another free port if that one is taken meanwhile),
    storing into ``data_dir``; ``config=None``: no scraping (to query stored data)."""
    tmp = [tempfile.mkdtemp(prefix="regstudy-prom-")] if config is None or log is None else []
    if config is None:
        config = Path(tmp[0]) / "prometheus.yml"
        config.write_text("global: {}\n")
    log = log or Path(tmp[0]) / "prometheus.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    for attempt in (port, free_port(None)):
        url = f"http://127.0.0.1:{attempt}"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [exe, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
                 f"--web.listen-address=127.0.0.1:{attempt}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline and not _ready(url):
            time.sleep(0.2)
        if proc.poll() is None and _ready(url):
            return Server(proc, url, data_dir, log, tmp)
        Server(proc, url, data_dir, log).stop()
        if "address already in use" not in _last_log_line(log):
            break
    for d in tmp:
        shutil.rmtree(d, ignore_errors=True)
    raise PrometheusError(f"--prometheus: {exe} did not start: {_last_log_line(log) or 'no output'} (log: {log})")


class Watch:
    """``study.run --prometheus``: a port chosen before the cluster starts (its dashboard is
    told where Prometheus will be), Prometheus started once the sweep is about to run, a last
    scrape after the sweep, and the stop."""

    def __init__(self, exp_dir: Path):
        self.exp_dir = Path(exp_dir)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: Server | None = None
        self._created: list[Path] = []
        self._env_set = False

    def before_local_cluster(self) -> None:
        # Ray's dashboard (Metrics page, Grafana's generated data source) looks for Prometheus
        # at RAY_PROMETHEUS_HOST when its cluster starts; a user's own setting wins.
        ray = sys.modules.get("ray")
        if "RAY_PROMETHEUS_HOST" not in os.environ and not (ray and ray.is_initialized()):
            os.environ["RAY_PROMETHEUS_HOST"] = self.url
            self._env_set = True

    def start(self, experiment: str) -> list[str]:
        """Start Prometheus; returns the lines to print. Raises :class:`PrometheusError`, leaving
        nothing behind in the experiment directory."""
        exe = binary()
        if exe is None:
            raise PrometheusError(INSTALL)
        config = ray_config()
        data, log = self.exp_dir / DATA_DIR, self.exp_dir / f"{DATA_DIR}.log"
        self._created = [p for p in (data, log) if not p.exists()]
        try:
            self.server = start(exe, data, self.port, config, log)
        except PrometheusError:
            for p in self._created:
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
            raise
        self.url = self.server.url
        lines = [f"Prometheus: {self.url} (Ray's config {config}; data in {data}; stopped when the sweep ends)"]
        lines += [f"  {what}: {graph_link(self.url, expr)}" for what, expr in queries(experiment).items()]
        return lines

    def flush(self) -> None:
        """Wait for a scrape of every Ray endpoint made after the sweep's last values were
        exported, so Prometheus holds the final state (at most ~one export and two scrapes)."""
        if self.server is None:
            return
        print("Prometheus: waiting for its last scrape of the sweep's metrics (Ctrl-C skips it) ...", flush=True)
        try:
            export_s = _export_interval_s()
            scraped = self.server.wait_scraped(time.time() + export_s, timeout_s=export_s + 30)
        except KeyboardInterrupt:
            return
        if not scraped:
            print("warning: Prometheus did not scrape Ray's metrics endpoints after the sweep ended; its last "
                  "values may lag behind the trial table", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self._env_set:
            os.environ.pop("RAY_PROMETHEUS_HOST", None)
            self._env_set = False
        if self.server is None:
            return
        self.server.stop()
        print(f"Prometheus stopped (its data: {self.server.data_dir}; see the README to look at it again)",
              flush=True)
        self.server = None
