"""``--results-dir s3://bucket/prefix`` against a real S3-compatible server on 127.0.0.1 (moto's
server mode, tests/s3server.py), on a real local Ray cluster: a sweep whose trials are killed and
retried from their checkpoints in the bucket, at most K checkpoints each there; an interrupted
sweep resumed on a machine with none of its files (the local mirror deleted); the trial table,
experiment.json and the Optuna study read back from the bucket."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys

import optuna
import pandas as pd
import pytest
import ray

from procs import wait_for
from s3server import moto_s3
from study import results_location
from study.run import main

EPOCHS = 4


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The bucket and, started inside it (workers inherit its AWS_* environment), the cluster."""
    root = tmp_path_factory.mktemp("s3")
    spec = root / "faults"
    spec.write_text("")
    saved = {k: os.environ.get(k) for k in ("REGSTUDY_FAULT", "REGSTUDY_OFFLINE", "REGSTUDY_CACHE")}
    with moto_s3(root) as bucket:
        os.environ.update(REGSTUDY_FAULT=f"@{spec}", REGSTUDY_OFFLINE="1", REGSTUDY_CACHE=str(root / "cache"))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield bucket, spec, root / "cache"
        finally:
            ray.shutdown()
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def args(tiny_zip, uri, name, *extra):
    return ["--space", "none", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", str(EPOCHS),
            "--set", "batch_size=16", "--name", name, "--results-dir", uri, "--num-samples", "2",
            "--max-concurrent", "2", "--cpus-per-trial", "1", "--grace-period", str(EPOCHS),
            "--table-refresh-s", "0", "--quiet", *extra]


def table_from_bucket(bucket, name) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(bucket.read_bytes(f"{name}/trials.parquet")))


def result_rows(bucket, key) -> list[dict]:
    return [json.loads(x) for x in bucket.read_text(key).splitlines() if x.strip()]


def test_sweep_in_a_bucket_retries_from_its_checkpoints_there(s3, tiny_zip, capsys):
    bucket, spec, cache = s3
    spec.write_text("sigkill_once@3")  # every trial's worker dies once after training epoch 3
    try:
        assert main(args(tiny_zip, bucket.uri, "b", "--keep-checkpoints", "1")) == 0
    finally:
        spec.write_text("")
    out = capsys.readouterr().out
    assert f"the experiment is in {bucket.uri}/b/" in out
    keys = bucket.keys("b")
    trials = sorted({k.split("/")[3] for k in keys if k.startswith("b/ray/search/trial_")})
    assert len(trials) == 2
    for t in trials:
        mine = [k for k in keys if k.startswith(f"b/ray/search/{t}/")]
        # one checkpoint kept, in the bucket; the retry resumed from epoch 2's
        assert {k.split("/")[4] for k in mine if "/checkpoint_" in k} == {"checkpoint_000003"}
        restored = {r["epoch"]: r["restored_from_epoch"] for r in result_rows(bucket, f"b/ray/search/{t}/result.json")}
        assert restored[3] == restored[4] == 2
    # the driver's files are in the bucket too, and the table there is the whole record
    for name in ("experiment.json", "trials.parquet", "trials.csv", "summary.csv", "statuses.json", "optuna.db"):
        assert f"b/{name}" in keys
    table = table_from_bucket(bucket, "b")
    assert sorted(table.groupby("trial_id").epoch.apply(list).tolist()) == [[1, 2, 3, 4]] * 2
    assert (table.failures == 1).all() and set(table.status) == {"completed"}
    record = json.loads(bucket.read_text("b/experiment.json"))
    in_bucket = sum(bucket.fs.get_file_info(bucket.path(k)).size for k in keys if k != "b/experiment.json")
    assert abs(record["disk"]["bytes"] - in_bucket) <= 0.05 * in_bucket  # (measured in the bucket)
    assert record["tune_state_at"]["search"] == f"{bucket.uri}/b"
    # nothing of the experiment but the driver's copies on the local disk
    mirror = results_location.mirror_dir(bucket.uri, "b")
    assert mirror.is_relative_to(cache) and not (mirror / "ray").exists()


def test_interrupted_sweep_resumes_from_the_bucket_alone(s3, tiny_zip, tmp_path):
    """Driver 1 (its own cluster) is stopped with Ctrl-C while its trials wait at epoch 2; its
    local files are then deleted, as on another machine. ``--resume`` gets everything from the
    bucket and completes: both trials with every epoch once, two trials in the Optuna study."""
    bucket, spec, cache = s3
    spec.write_text("hold@2")
    log = tmp_path / "driver1.log"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "study.run", *args(tiny_zip, bucket.uri, "r"),
                                 "--no-dashboard", "--num-cpus", "2"],
                                env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    mirror = results_location.mirror_dir(bucket.uri, "r")
    try:
        def both_at_epoch_1():
            try:
                t = pd.read_parquet(mirror / "trials.parquet")
            except Exception:  # noqa: BLE001 - not written yet
                return False
            return t.trial_id.nunique() == 2 and (t.groupby("trial_id").epoch.max() >= 1).all()
        wait_for(proc, log, both_at_epoch_1, "both trials at epoch 1")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        spec.write_text("")
    text = log.read_text()
    assert rc == 130, text[-3000:]
    assert f"--results-dir {bucket.uri} --resume" in text
    assert set(table_from_bucket(bucket, "r").status) == {"interrupted"}
    shutil.rmtree(mirror)  # another machine: nothing local

    # (the endpoint in the URI's query this time: the same place, the same local copy)
    assert main([*args(tiny_zip, bucket.explicit_uri(), "r"), "--resume"]) == 0
    table = table_from_bucket(bucket, "r")
    assert sorted(table.groupby("trial_id").epoch.apply(list).tolist()) == [[1, 2, 3, 4]] * 2
    assert set(table.status) == {"completed"} and not table.duplicated(["trial_id", "epoch"]).any()
    db = tmp_path / "optuna.db"
    db.write_bytes(bucket.read_bytes("r/optuna.db"))
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    record = json.loads(bucket.read_text("r/experiment.json"))
    assert [c["argv"][-1] for c in record["commands"]] == ["2", "--resume"]


def test_bucket_errors_before_anything_starts(s3, tiny_zip, capsys):
    """A missing bucket, and a name the bucket already holds: exit 2, one line, nothing written."""
    bucket, _, _ = s3
    assert main(args(tiny_zip, "s3://no-such-bucket/x", "n")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --results-dir s3://no-such-bucket/x: no bucket 'no-such-bucket' there (create it first)"]
    bucket.fs.open_output_stream(bucket.path("taken", "experiment.json")).close()
    before = bucket.keys("taken")
    assert main(args(tiny_zip, bucket.uri, "taken")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: experiment 'taken' already exists in {bucket.uri}; use --resume to continue it, "
                   "or another --name"]
    assert bucket.keys("taken") == before
    assert main([*args(tiny_zip, bucket.uri, "absent"), "--resume"]) == 2
    assert "no experiment 'absent' in " + bucket.uri in capsys.readouterr().err
    assert main(args(tiny_zip, "s4://bucket/x", "n")) == 2
    assert "--results-dir s4://bucket/x: unknown scheme 's4://'; allowed: a directory, or s3://BUCKET/PREFIX" \
        in capsys.readouterr().err


def test_resume_elsewhere_names_the_cache_the_saved_search_needs(s3, tiny_zip, tmp_path, capsys, monkeypatch):
    """Another machine whose cache is elsewhere: Tune's saved searcher names the study's file in
    the first driver's copy, so --resume says which REGSTUDY_CACHE makes the copy land there."""
    bucket, _, cache = s3
    monkeypatch.setenv("REGSTUDY_CACHE", str(tmp_path / "elsewhere"))
    assert main([*args(tiny_zip, bucket.uri, "b"), "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(f"run the command again with REGSTUDY_CACHE={cache} (the copy is "
                                             "then made there)"), err
