"""CIFAR-10 and CIFAR-100: the official Python-version archives (``cifar-10-python.tar.gz``,
``cifar-100-python.tar.gz``), read as the .tar.gz itself or as its extracted directory.

Splits: the official test batch is the **test** set; a stratified **validation** split
(``val_fraction`` of each class, ``split_seed``) is carved out of the official training batches.
CIFAR-100 uses the fine labels (100 classes). ``classes: N`` takes the first N classes by label
index; ``class_list`` names them (the label names of the meta file). Images stay 32x32 as stored.

The batches are Python pickles, and unpickling can run code: they are read with an unpickler that
rebuilds numpy arrays and nothing else (all the official files hold besides dicts, lists,
numbers and strings), so a file that asks for anything more is refused, not run.
"""
from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import cache
from .spec import DataError, DatasetSpec, Listing, register, select_first

if TYPE_CHECKING:  # (config imports the dataset table, which imports this module)
    from ..config import TrialConfig

try:  # numpy >= 2 keeps it in numpy._core; the official files (numpy 1, Python 2) name numpy.core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy < 2
    from numpy.core.multiarray import _reconstruct

SIDE = 32
ROW = 3 * SIDE * SIDE  # one image: the R plane, the G plane, the B plane, each row-major


@dataclass(frozen=True)
class Variant:
    name: str          # in messages
    root: str          # the archive's top folder
    train: tuple[str, ...]
    test: str
    meta: str
    names_key: str     # label names in the meta file
    labels_key: str    # labels in a batch
    archive: str


CIFAR10 = Variant("CIFAR-10", "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)),
                  "test_batch", "batches.meta", "label_names", "labels", "cifar-10-python.tar.gz")
CIFAR100 = Variant("CIFAR-100", "cifar-100-python", ("train",), "test", "meta", "fine_label_names",
                   "fine_labels", "cifar-100-python.tar.gz")
VARIANTS = (CIFAR10, CIFAR100)


# --- unpickling the official batches, and nothing else -----------------------------------------
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype}


class _Refused(pickle.UnpicklingError):
    pass


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def _str(v: Any) -> Any:
    # Python 2 strings arrive as str (encoding="latin1", as torchvision reads them); a file
    # re-saved from Python 3 may hold bytes instead
    return v.decode("latin1") if isinstance(v, bytes) else v


def unpickle(blob: bytes, where: str, what: str) -> dict[str, Any]:
    try:
        obj = _ArraysOnly(io.BytesIO(blob), encoding="latin1").load()
    except _Refused as e:
        raise DataError(f"{where} is not a {what}: its pickle asks for {e}, which the official files never "
                        "do (refused: unpickling it could run code)") from None
    except Exception as e:  # a damaged pickle fails in any of a dozen ways; all of them mean "damaged"
        raise DataError(f"corrupt {what} {where}: cannot unpickle it ({type(e).__name__}: "
                        f"{' '.join(str(e).split())})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where} is not a {what}: it holds a pickled {type(obj).__name__}, not a dict")
    return {_str(k): v for k, v in obj.items()}


# --- the archive or the directory --------------------------------------------------------------
class _Source:
    """The files of one variant, read from the .tar.gz (in one pass) or from its directory."""

    def __init__(self, path: Path, v: Variant):
        self.path, self.v = path, v
        self.wanted = (v.meta, *v.train, v.test)
        if not path.exists():
            raise DataError(f"data not found: {path} (give {layout(v)})")
        if path.is_dir():
            self._open_dir()
        else:
            self._open_tar()

    def _open_dir(self) -> None:
        for root in (self.path, self.path / self.v.root):
            if (root / self.v.meta).is_file():
                self.root = root
                break
        else:
            raise DataError(f"{self.path} is not {self.v.name}'s layout: no {self.v.meta} in it or in "
                            f"{self.v.root}/{self._other_hint(self._dir_has)}")
        self.tar = None

    def _dir_has(self, v: Variant) -> bool:
        return any((r / v.meta).is_file() for r in (self.path, self.path / v.root))

    def _open_tar(self) -> None:
        self.tar = True
        self.blobs: dict[str, bytes] = {}
        self.members: set[str] = set()
        self.names: dict[str, str] = {}  # rel -> the member's name in the archive
        try:
            with tarfile.open(self.path, "r:*") as tf:
                for m in tf:  # one pass, in archive order: a .tar.gz cannot seek back cheaply
                    self.members.add(m.name)
                    rel = self._rel(m.name)
                    if rel in self.wanted and m.isfile():
                        self.blobs[rel] = tf.extractfile(m).read()
                        self.names[rel] = m.name
        except tarfile.ReadError as e:
            raise DataError(f"{self.path} is not a {self.v.name} archive ({self.v.archive}) or directory: "
                            f"{' '.join(str(e).split())}") from None
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(f"corrupt archive {self.path}: {' '.join(str(e).split()) or type(e).__name__}; "
                            "download it again") from None
        except OSError as e:
            raise DataError(f"cannot read {self.path}: {e.strerror or e}") from None
        if self.v.meta not in self.blobs:
            raise DataError(f"{self.path} is not {self.v.name}'s layout: no {self.v.root}/{self.v.meta} "
                            f"inside{self._other_hint(self._tar_has)}")

    def _rel(self, name: str) -> str:
        name = name.removeprefix("./")
        return name.removeprefix(self.v.root + "/")

    def _tar_has(self, v: Variant) -> bool:
        return any(m.removeprefix("./") in (v.meta, f"{v.root}/{v.meta}") for m in self.members)

    def _other_hint(self, has) -> str:
        other = [v for v in VARIANTS if v is not self.v and v.meta != self.v.meta and has(v)]
        return f" (it looks like {other[0].name}: choose --dataset {other[0].name.lower().replace('-', '')})" \
            if other else ""

    def label(self, rel: str) -> str:
        if self.tar:
            return f"{self.path}:{self.names.get(rel, f'{self.v.root}/{rel}')}"
        return str(self.root / rel)

    def read(self, rel: str) -> bytes:
        if self.tar:
            if rel not in self.blobs:
                raise DataError(f"missing from the {self.v.name} archive: {self.label(rel)}")
            return self.blobs[rel]
        try:
            return (self.root / rel).read_bytes()
        except FileNotFoundError:
            raise DataError(f"missing from the {self.v.name} layout: {self.label(rel)}") from None
        except OSError as e:
            raise DataError(f"cannot read {self.label(rel)}: {e.strerror or e}") from None

    def identity(self) -> str:
        if self.tar:
            return cache.file_identity(self.path)
        files = []
        for rel in self.wanted:
            st = (self.root / rel).stat() if (self.root / rel).exists() else None
            files.append((rel, st and st.st_size, st and st.st_mtime_ns))
        return cache.tree_identity(self.root, files)


def _names(src: _Source) -> list[str]:
    rel = src.v.meta
    meta = unpickle(src.read(rel), src.label(rel), f"{src.v.name} meta file")
    names = meta.get(src.v.names_key)
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(_str(n), str) for n in names):
        raise DataError(f"{src.label(rel)} is not a {src.v.name} meta file: no list of class names under "
                        f"{src.v.names_key!r}")
    return [_str(n) for n in names]


def _batch(src: _Source, rel: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    where, what = src.label(rel), f"{src.v.name} batch"
    b = unpickle(src.read(rel), where, what)
    if "data" not in b or src.v.labels_key not in b:
        raise DataError(f"{where} is not a {what}: it has no 'data' and {src.v.labels_key!r} "
                        f"(it has: {', '.join(map(str, b)) or 'nothing'})")
    x, y = b["data"], np.asarray(b[src.v.labels_key])
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != ROW:
        shape = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{where}: 'data' is {shape}; a {what} holds uint8 rows of {ROW} values "
                        f"(3 x {SIDE} x {SIDE})")
    if y.ndim != 1 or len(y) != len(x) or (len(y) and y.dtype.kind not in "iu"):
        raise DataError(f"{where}: {y.size} {src.v.labels_key} for {len(x)} images; expected one integer each")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise DataError(f"{where}: label {bad} is outside 0..{n_classes - 1} (the meta file names "
                        f"{n_classes} classes)")
    return x, y.astype(np.int64)


def select_classes(v: Variant, names: list[str], n: int | None, class_list: tuple[str, ...] | None) -> list[int]:
    """Label indices, in label order: the first ``n``, or the named ones."""
    if class_list:
        unknown = [c for c in class_list if c not in names]
        if unknown:
            raise DataError(f"class_list: {unknown[0]!r} is not a {v.name} class; allowed: {', '.join(names)}")
        return sorted(names.index(c) for c in dict.fromkeys(class_list))
    return list(range(len(select_first(names, n, v.name))))


def images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) rows -> uint8 (N, 32, 32, 3)."""
    return np.ascontiguousarray(rows.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1))


def open_listing(v: Variant, cfg: TrialConfig, path: Path) -> Listing:
    src = _Source(path, v)
    names = _names(src)
    chosen = select_classes(v, names, cfg.classes, cfg.class_list)
    remap = np.full(len(names), -1, np.int64)
    remap[chosen] = np.arange(len(chosen))
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, rels in (("train", v.train), ("test", (v.test,))):
        xs, ys = zip(*(_batch(src, rel, len(names)) for rel in rels))
        x, y = np.concatenate(xs), remap[np.concatenate(ys)]
        keep = y >= 0
        parts[split] = (x[keep], y[keep])
    counts = {s: np.bincount(y, minlength=len(chosen)) for s, (_, y) in parts.items()}

    def decode() -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for s, (x, y) in parts.items():
            out[f"{s}_x"], out[f"{s}_y"] = images(x), y
        return out

    return Listing(classes=[names[i] for i in chosen], counts=counts, identity=[src.identity()],
                   decode=decode, source=str(path), split_words={"test": "official test image"})


def layout(v: Variant) -> str:
    return f"{v.archive} or its extracted {v.root} directory"


for _v, _name, _md5, _summary in (
        (CIFAR10, "cifar10", "c58f30108f718f92721af3b95e74349a",
         "CIFAR-10 (10 classes, 50000 + 10000 images of 32x32): official test batch = test, validation "
         "carved from train"),
        (CIFAR100, "cifar100", "eb9058c3a382ffc7106e4002c42a8d85",
         "CIFAR-100 (100 fine-label classes, 50000 + 10000 images of 32x32): official test batch = test, "
         "validation carved from train")):
    register(DatasetSpec(
        name=_name, open=partial(open_listing, _v), summary=_summary, layout=layout(_v),
        archive=_v.archive, url=f"https://www.cs.toronto.edu/~kriz/{_v.archive}", md5=_md5,
        defaults={"image_size": SIDE, "classes": None}))
