"""The S3 test fixture (tests/s3server.py): moto's server on 127.0.0.1 reached by pyarrow and by Ray Tune."""

from __future__ import annotations

import json
import os
import socket

import pyarrow.fs as pafs
import pytest

from s3server import moto_s3


def test_bucket_reachable_via_pyarrow_and_env_restored(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://example.invalid")  # must win inside, come back after
    monkeypatch.setenv("AWS_PROFILE", "someone-real")  # must be hidden inside (fake credentials only)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)  # must be unset again after
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    with moto_s3(tmp_path, bucket="bkt", prefix="runs/") as s3:
        assert s3.uri == "s3://bkt/runs"
        assert os.environ["AWS_ENDPOINT_URL"] == s3.endpoint_url and "AWS_PROFILE" not in os.environ

        # a plain s3:// URI resolves to the server through the environment (what Ray's StorageContext does)
        fs, path = pafs.FileSystem.from_uri(s3.join("exp", "a.txt"))
        assert path == "bkt/runs/exp/a.txt"
        with fs.open_output_stream(path) as f:
            f.write(b"hello")
        # the endpoint in the query works too, and both see the same bucket
        fs2, path2 = pafs.FileSystem.from_uri(s3.explicit_uri("exp", "a.txt"))
        assert path2 == path
        with fs2.open_input_stream(path2) as f:
            assert f.readall() == b"hello"
        s3.fs.create_dir(s3.path("exp", "empty"))  # a "directory" is no object: keys() leaves it out
        assert s3.keys() == ["exp/a.txt"] and s3.keys("exp") == ["exp/a.txt"] and s3.keys("nope") == []
        assert s3.read_text("exp/a.txt") == "hello"
        port = int(s3.endpoint.rsplit(":", 1)[1])

    assert s3.process.poll() is not None  # stopped
    assert os.environ["AWS_ENDPOINT_URL"] == "http://example.invalid" and os.environ["AWS_PROFILE"] == "someone-real"
    assert "AWS_ENDPOINT_URL_S3" not in os.environ and "AWS_ACCESS_KEY_ID" not in os.environ
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def _trainable():
    """Built in a function so that cloudpickle sends it by value: Ray workers cannot import test modules."""
    import os
    import tempfile
    from pathlib import Path

    from ray import tune

    def train(config):
        for i in range(1, 4):
            with tempfile.TemporaryDirectory() as d:
                # the endpoint this worker sees: inherited from the driver when Ray starts after moto_s3()
                state = {"iter": i, "x": config["x"], "endpoint": os.environ.get("AWS_ENDPOINT_URL")}
                Path(d, "state.json").write_text(json.dumps(state))
                tune.report({"loss": config["x"] / i}, checkpoint=tune.Checkpoint.from_directory(d))

    return train


def test_tune_run_checkpoints_land_in_bucket(tmp_path):
    import ray
    from ray import tune

    with moto_s3(tmp_path) as s3:
        # after the server: the local cluster's workers inherit the AWS_* environment
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            grid = tune.Tuner(
                _trainable(),
                param_space={"x": 6.0},
                run_config=tune.RunConfig(storage_path=s3.uri, name="exp", verbose=0,
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=2)),
            ).fit()
        finally:
            ray.shutdown()
        assert not grid.errors
        (result,) = grid
        trial = result.path.rsplit("/", 1)[1]
        # Tune gives bucket paths without the scheme, with the filesystem beside them
        assert result.path == s3.path("exp", trial)
        assert isinstance(result.checkpoint.filesystem, pafs.S3FileSystem)
        assert result.checkpoint.path == s3.path("exp", trial, "checkpoint_000002")

        keys = s3.keys("exp")
        assert {"exp/tuner.pkl", "exp/.validate_storage_marker"} <= set(keys)
        assert any(k.startswith("exp/experiment_state-") and k.endswith(".json") for k in keys)
        assert sorted(k for k in keys if "/checkpoint_" in k) == [  # num_to_keep=2: the first one was deleted
            f"exp/{trial}/checkpoint_000001/state.json", f"exp/{trial}/checkpoint_000002/state.json"]
        state = json.loads(s3.read_text(f"exp/{trial}/checkpoint_000002/state.json"))
        assert state == {"iter": 3, "x": 6.0, "endpoint": s3.endpoint_url}
        rows = [json.loads(line) for line in s3.read_text(f"exp/{trial}/result.json").splitlines()]
        assert [(r["training_iteration"], r["loss"]) for r in rows] == [(1, 6.0), (2, 3.0), (3, 2.0)]
        assert tune.Tuner.can_restore(s3.join("exp")) and tune.Tuner.can_restore(s3.explicit_uri("exp"))
        assert not tune.Tuner.can_restore(s3.join("other"))
