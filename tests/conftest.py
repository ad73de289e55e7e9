from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

from datagen import make_tiny_imagenet

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_zip(tmp_path_factory) -> Path:
    """A 4-class, 20+5-images-per-class archive in the official layout (one grayscale image)."""
    return make_tiny_imagenet(tmp_path_factory.mktemp("tin") / "tiny-imagenet-200.zip")


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("REGSTUDY_CACHE", str(d))
    return d


@pytest.fixture()
def http_dir(tmp_path):
    """Serve a fresh directory over HTTP on 127.0.0.1; yields (directory, base_url)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def pytest_configure(config):
    # Ray in tests: no token auth, short temp paths (unix socket paths have a length limit).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_TMPDIR", "/tmp/rayt")


@pytest.fixture(scope="session")
def legacy_experiment(tmp_path_factory):
    """(experiment dir, NLTK data dir) of an interrupted POS sweep recorded by the code before the
    regularizer catalog (tests/legacygen.py: commit 04efc63 from this repository's history).
    Tests copy it before changing it; Ray Tune's state in it names this path."""
    from legacygen import legacy_code, record_interrupted
    from posgen import make_nltk_data

    root = tmp_path_factory.mktemp("legacy")
    code = legacy_code(root / "old")
    if code is None:
        pytest.skip("commit 04efc63 is not in this clone's history (shallow clone): cannot record an old experiment")
    nltk_dir = make_nltk_data(root / "nltk", "treebank", n=60)
    return record_interrupted(code, root / "results", nltk_dir), nltk_dir


@pytest.fixture()
def one_thread():
    """Tiny models on a shared 2-core machine: a second thread per process costs more than it gives."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tb_dir(tmp_path_factory):
    """A tiny treebank (NLTK layout) with 40 extra 3-word sentences."""
    import posgen

    return posgen.make_nltk_data(tmp_path_factory.mktemp("nd") / "nltk_data", "treebank", n=60, lengths={3: 40})


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU local Ray cluster for one module's sweeps (test modules with their own faults define
    their own `cluster`)."""
    import ray

    os.environ["REGSTUDY_OFFLINE"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture()
def isolated_nltk(monkeypatch, one_thread):
    """No real NLTK data (~/nltk_data, $NLTK_DATA) and no downloads unless a test asks."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", [])
    monkeypatch.setenv("REGSTUDY_OFFLINE", "1")


@pytest.fixture()
def no_training(monkeypatch):
    """train_once with run_trial replaced: a bad input must be refused before it is reached."""
    from study import train_once

    monkeypatch.setattr(train_once, "run_trial", lambda *a, **k: pytest.fail("training started"))


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    """One cluster for the module; its workers read the fault spec from a file each time, so a
    test sets the faults it wants with ``faults.write_text(...)``."""
    import ray

    spec = tmp_path_factory.mktemp("faults") / "spec"
    spec.write_text("")
    os.environ["REGSTUDY_FAULT"] = f"@{spec}"  # workers inherit it at ray.init
    os.environ["REGSTUDY_OFFLINE"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield spec
    ray.shutdown()
    os.environ.pop("REGSTUDY_FAULT", None)
