"""The decoded-image cache: uint8 ``.npy`` arrays per split, published atomically, read memory-mapped.

One directory per (dataset, source identity, classes, decode settings) under
``<cache_dir>/decoded/<key>/``; a damaged entry (truncated file, shapes that do not fit) is
removed and decoded again. Small derived values (the training split's channel statistics) are
JSON files beside the arrays.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..config import TrialConfig

# 2: the dataset's name in the key, optional val/test arrays, per-dataset image sides
VERSION = 2

log = logging.getLogger(__name__)


def default_cache_dir(cfg: TrialConfig) -> Path:
    if cfg.cache_dir:
        return Path(os.path.expanduser(cfg.cache_dir))  # (Path.expanduser raises for an unknown ~user)
    return Path(os.path.expanduser(os.environ.get("REGSTUDY_CACHE", "~/.cache/regstudy")))


def file_identity(path: Path) -> str:
    """A source file's part of a cache key: its resolved path, size and mtime."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def tree_identity(root: Path, files: Iterable[tuple[str, int | None, int | None]]) -> str:
    """A source directory's part of a cache key: its resolved path and a digest of the
    ``(relative path, size, mtime_ns)`` of the files it is read from (None: missing)."""
    h = hashlib.sha256()
    for rel, size, mtime in files:
        h.update(f"{rel}|{size}|{mtime}\n".encode())
    return f"{root.resolve()}|{h.hexdigest()}"


def entry_dir(cfg: TrialConfig, dataset: str, identity: list[Any], classes: list[str]) -> Path:
    key = hashlib.sha256(json.dumps([VERSION, dataset, identity, classes]).encode()).hexdigest()[:20]
    return default_cache_dir(cfg) / "decoded" / key


def read(cdir: Path, splits: list[str], n_classes: int) -> dict[str, np.ndarray] | None:
    """The arrays of ``splits`` under ``cdir`` (memory-mapped), or None when there are none or
    they are damaged: then the caller decodes again."""
    if not (cdir / "meta.json").exists():
        return None
    try:
        arrays = {f"{s}_{a}": np.load(cdir / f"{s}_{a}.npy", mmap_mode="r") for s in splits for a in "xy"}
        side = None
        for s in splits:
            x, y = arrays[f"{s}_x"], arrays[f"{s}_y"]
            if x.ndim != 4 or x.shape[3] != 3 or y.shape != (len(x),) or len(y) == 0:
                raise ValueError(f"{s}_x {x.shape} and {s}_y {y.shape} do not fit together")
            if side not in (None, x.shape[1:3]):
                raise ValueError(f"{s}_x has sides {x.shape[1:3]}, not {side}")
            side = x.shape[1:3]
            if int(y.min()) < 0 or int(y.max()) >= n_classes:
                raise ValueError(f"{s}_y holds labels outside 0..{n_classes - 1}")
        return arrays
    except (OSError, ValueError, EOFError) as e:
        log.warning("the decoded-image cache %s is damaged (%s); decoding the images again", cdir,
                    " ".join(str(e).split()))
        shutil.rmtree(cdir, ignore_errors=True)
        return None


def write(cdir: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Publish ``arrays`` as one directory, atomically: a reader sees all of them or none."""
    cdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cdir.name}.", dir=cdir.parent))
    try:
        for name, a in arrays.items():
            np.save(tmp / f"{name}.npy", a)
        (tmp / "meta.json").write_text(json.dumps({**meta, "version": VERSION}))
        try:
            os.replace(tmp, cdir)
        except OSError:  # a concurrent writer won the race: theirs is as good as ours
            if not (cdir / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, value: Any) -> None:
    """Best effort (a read-only cache still works, it only recomputes), atomic."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(value, f)
        os.replace(tmp, path)
    except OSError as e:
        log.debug("could not cache %s: %s", path, e)
