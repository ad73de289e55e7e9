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
