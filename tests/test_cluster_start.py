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
import json, time, psutil, ray
from ray import tune
from study.cluster import connect

connect(None, num_cpus=2, include_dashboard=False)
time.sleep(1.5)  # (the raylet prestarts its workers as it comes up; give them time to appear)

def idle():
    return sum("ray::IDLE" in " ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)
               if p.is_running())

before = idle()
result = tune.Tuner(lambda config: {"x": config["a"] * 2}, param_space={"a": 3},
                    run_config=tune.RunConfig(storage_path=STORAGE, verbose=0)).fit()
print(json.dumps({"idle": before, "x": result[0].metrics["x"]}))
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
