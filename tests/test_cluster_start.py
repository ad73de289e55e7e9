"""The local cluster study.run starts (study.cluster.connect) prestarts no idle task workers, which
Ray Tune's trial actors never use; a user's own RAY_enable_worker_prestart still wins."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# In a fresh process: start the cluster as study.run does, run one Tune trial on it, and count the
# cluster's Python worker processes that were never given anything to run (Ray names them
# "ray::IDLE"), while the cluster is still up.
PROBE = r"""
import json, os, time, psutil, ray
from ray import tune
from study.cluster import connect

connect(None, num_cpus=2, include_dashboard=False)

def workers():
    # a worker process: python .../default_worker.py until it renames itself ray::IDLE (no trial
    # has run yet); the raylet's own command line names default_worker.py too, inside an option
    n = 0
    for p in psutil.Process().children(recursive=True):
        try:
            argv = p.cmdline()
        except psutil.Error:
            continue
        n += bool(argv) and (argv[0].startswith("ray::IDLE") or any(a.endswith("default_worker.py") for a in argv[1:2]))
    return n

# the most seen over 6 s: the raylet prestarts its workers as it comes up, on a busy machine late
before = 0
for _ in range(24):
    before = max(before, workers())
    time.sleep(0.25)
result = tune.Tuner(lambda config: {"x": config["a"] * 2}, param_space={"a": 3},
                    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0)).fit()
print(json.dumps({"idle": before, "x": result[0].metrics["x"],
                  "env_after": [os.environ.get(k) for k in ("RAY_enable_worker_prestart",
                                                             "RAY_prestart_worker_first_driver")]}))
ray.shutdown()
"""


def probe(tmp_path: Path, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if not k.startswith("RAY_enable_worker_prestart")
            and not k.startswith("RAY_prestart_worker_first_driver")}
    full.update({"RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(REPO), **env})
    out = subprocess.run([sys.executable, "-c", f"STORAGE = {str(tmp_path / 'tune')!r}\n" + PROBE],
                         capture_output=True, text=True, env=full, cwd=tmp_path, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("user_value, want_idle", [(None, 0), ("1", 2)])
def test_local_cluster_prestarts_no_idle_workers(tmp_path, user_value, want_idle):
    got = probe(tmp_path, **({} if user_value is None else {"RAY_enable_worker_prestart": user_value,
                                                             "RAY_prestart_worker_first_driver": user_value}))
    assert got["x"] == 6  # a Tune trial still runs (in a worker of its own)
    assert got["idle"] == want_idle  # control: Ray's default, one per CPU of the 2-CPU cluster
    # only the raylet saw the setting: the process's environment is as the user left it
    assert got["env_after"] == [user_value, user_value]
