"""Fetch an archive into a cache directory, verified by MD5, never leaving a partial file behind."""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm


class DownloadError(RuntimeError):
    """The archive could not be fetched, or what arrived is not the archive we asked for."""


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path, md5: str | None, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    The bytes go to a temporary file beside ``dest`` and are renamed into place only after the
    length and checksum match, so an interrupted or corrupted transfer never looks like data.
    """
    dest = Path(dest)
    md5 = md5.lower() if md5 else md5  # (hexdigest() is lower case; the config accepts either)
    if dest.exists():
        if md5 is None or md5sum(dest) == md5:
            return dest
        raise DownloadError(f"{dest} exists but its md5 is not {md5}; delete it to download again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        received = 0
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp, os.fdopen(fd, "wb") as out:
                expected = resp.headers.get("Content-Length")
                expected = int(expected) if expected is not None else None
                with tqdm(total=expected, unit="B", unit_scale=True, desc=f"download {dest.name}",
                          disable=None) as bar:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        out.write(block)
                        h.update(block)
                        received += len(block)
                        bar.update(len(block))
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as e:
            raise DownloadError(f"download of {url} failed: {e}") from e
        if expected is not None and received != expected:
            raise DownloadError(f"download of {url} is incomplete: {received} of {expected} bytes")
        if md5 is not None and h.hexdigest() != md5:
            raise DownloadError(f"checksum mismatch for {url}: md5 {h.hexdigest()}, expected {md5}")
        os.replace(tmp, dest)
        return dest
    finally:
        tmp.unlink(missing_ok=True)
