"""Generate mini CIFAR-10 / CIFAR-100 archives for tests, in the official Python-version layout.

The official batches were written by Python 2's cPickle (protocol 2) with numpy 1: strings are
Python 2 ``str`` (read back with ``encoding="latin1"``) and arrays are rebuilt through
``numpy.core.multiarray._reconstruct``. :class:`Py2Pickler` writes the same opcodes, so the loader
is tested on what the real files contain, not on what Python 3 would write.
"""
from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class Py2Pickler(pickle._Pickler):
    """bytes as Python 2 ``str`` (SHORT_BINSTRING/BINSTRING), numpy 1's module names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_str(self, obj: str) -> None:  # Python 2 str: the official keys and names are bytes
        self.save_bytes(obj.encode("latin1"))

    dispatch[str] = save_str

    def save_global(self, obj, name=None) -> None:
        module = {"numpy._core.multiarray": "numpy.core.multiarray"}.get(obj.__module__, obj.__module__)
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def image(label: int, k: int, split: int) -> np.ndarray:
    """A 32x32 RGB image that says what it is: pixel (0, 0) = (label, k, split), pixel (0, 1) =
    (label, k, split) + 100, the rest a colour set by the label (so labels line up with pixels)."""
    x = np.empty((32, 32, 3), np.uint8)
    x[:] = ((label * 37) % 256, (label * 91 + 60) % 256, (label * 13 + 120) % 256)
    x[0, 0] = (label, k, split)
    x[0, 1] = (label + 100, k + 100, split + 100)
    return x


def rows(imgs: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072): R plane, G plane, B plane, as the official batches store them."""
    return np.ascontiguousarray(imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1))


def _split(n_classes: int, per_class: int, split: int, labels: list[int] | None = None
           ) -> tuple[np.ndarray, list[int]]:
    labels = labels if labels is not None else [c for k in range(per_class) for c in range(n_classes)]
    seen: dict[int, int] = {}
    imgs = []
    for c in labels:
        seen[c] = seen.get(c, -1) + 1
        imgs.append(image(c, seen[c], split))
    return rows(np.stack(imgs)), labels


def cifar10_files(train_per_class: int = 5, test_per_class: int = 2) -> dict[str, bytes]:
    """name -> bytes of cifar-10-batches-py/: data_batch_1..5 (the training images dealt out in
    turn), test_batch, batches.meta."""
    x, y = _split(10, train_per_class, 0)
    files = {}
    for b in range(5):
        files[f"data_batch_{b + 1}"] = py2_pickle({
            "batch_label": f"training batch {b + 1} of 5".encode(), "labels": y[b::5], "data": x[b::5],
            "filenames": [f"img_{i}.png".encode() for i in range(b, len(y), 5)]})
    tx, ty = _split(10, test_per_class, 1)
    files["test_batch"] = py2_pickle({"batch_label": b"testing batch 1 of 1", "labels": ty, "data": tx,
                                      "filenames": [f"t_{i}.png".encode() for i in range(len(ty))]})
    files["batches.meta"] = py2_pickle({"num_cases_per_batch": len(y) // 5,
                                        "label_names": [n.encode() for n in CIFAR10_NAMES], "num_vis": 3072})
    return files


def cifar100_names() -> tuple[list[str], list[str]]:
    return [f"fine{i:02d}" for i in range(100)], [f"coarse{i:02d}" for i in range(20)]


def cifar100_files(train_per_class: int = 3, test_per_class: int = 1) -> dict[str, bytes]:
    """name -> bytes of cifar-100-python/: train, test, meta (fine and coarse labels)."""
    fine, coarse = cifar100_names()
    files = {}
    for name, per, split in (("train", train_per_class, 0), ("test", test_per_class, 1)):
        x, y = _split(100, per, split)
        files[name] = py2_pickle({"filenames": [f"{name}_{i}.png".encode() for i in range(len(y))],
                                  "batch_label": f"{name}ing batch 1 of 1".encode(),
                                  "fine_labels": y, "coarse_labels": [c // 5 for c in y], "data": x})
    files["meta"] = py2_pickle({"fine_label_names": [n.encode() for n in fine],
                                "coarse_label_names": [n.encode() for n in coarse]})
    return files


ROOTS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def make_cifar(path: Path, which: str = "cifar10", as_tar: bool = True, files: dict[str, bytes] | None = None,
               **kw) -> Path:
    """Write the mini archive (``as_tar``: a .tar.gz whose top folder is the official root) or the
    extracted tree (``path`` is the parent of the root folder). ``files`` replaces the contents
    (e.g. with one batch damaged)."""
    files = files if files is not None else (cifar10_files if which == "cifar10" else cifar100_files)(**kw)
    root = ROOTS[which]
    path = Path(path)
    if as_tar:
        with tarfile.open(path, "w:gz") as tf:
            for name, blob in files.items():
                info = tarfile.TarInfo(f"{root}/{name}")
                info.size = len(blob)
                tf.addfile(info, io.BytesIO(blob))
    else:
        (path / root).mkdir(parents=True, exist_ok=True)
        for name, blob in files.items():
            (path / root / name).write_bytes(blob)
    return path
