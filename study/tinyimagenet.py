"""Tiny ImageNet: read the official layout (directory or zip), decode once, cache, split.

Splits: the official *val* set is labelled and the official *test* set is not, so the study
holds the official val set out as its **test** set and carves a stratified **validation** split
(``val_fraction`` of train, ``split_seed``) out of the official train set for tuning.

Decoded images are cached as uint8 ``.npy`` arrays (N, 64, 64, 3), keyed by the source file's
identity and the class list, so a second run loads in a fraction of a second (memory-mapped).
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from .download import fetch

if TYPE_CHECKING:  # (config imports the task table, which imports this module)
    from .config import TrialConfig

CACHE_VERSION = 1
ROOT = "tiny-imagenet-200"
ARRAYS = ("train_x", "train_y", "test_x", "test_y")

log = logging.getLogger(__name__)


class DataError(RuntimeError):
    """The data is missing, not in Tiny ImageNet's layout, or an image cannot be decoded."""


@dataclass
class ImageSplits:
    """Decoded uint8 images (N, H, W, 3) and int64 labels for each split, plus class names."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    source: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}


# --- reading the official layout ---------------------------------------------------------------
class _Source:
    """A Tiny ImageNet tree in a directory or a zip, addressed by paths relative to its root."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise DataError(f"data not found: {path} (give a Tiny ImageNet directory or zip)")
        self.zip = None
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile:
                raise DataError(f"{path} is not a zip archive") from None
            names = set(self.zip.namelist())
            prefixes = [p for p in (f"{ROOT}/", "") if f"{p}wnids.txt" in names]
            if not prefixes:
                raise DataError(f"{path} is not Tiny ImageNet's layout: no {ROOT}/wnids.txt inside")
            self.prefix = prefixes[0]
            self.names = names
        else:
            if (path / "wnids.txt").exists():
                self.root = path
            elif (path / ROOT / "wnids.txt").exists():
                self.root = path / ROOT
            else:
                raise DataError(f"{path} is not Tiny ImageNet's layout: no wnids.txt in it or in {ROOT}/")

    def label(self, rel: str) -> str:
        return f"{self.path}:{self.prefix}{rel}" if self.zip else str(self.root / rel)

    def read(self, rel: str) -> bytes:
        try:
            if self.zip:
                return self.zip.read(self.prefix + rel)
            return (self.root / rel).read_bytes()
        except (KeyError, FileNotFoundError):
            raise DataError(f"missing from the Tiny ImageNet layout: {self.label(rel)}") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # a damaged archive: CRC, truncation
            what = "image" if rel.lower().endswith((".jpeg", ".jpg")) else "file"
            why = "it fails its CRC-32 check" if "CRC" in str(e) else " ".join(str(e).split())
            raise DataError(f"corrupt {what} {self.label(rel)}: {why}; the zip is damaged: "
                            "download it again") from None
        except OSError as e:
            raise DataError(f"cannot read {self.label(rel)}: {e.strerror or e}") from None

    def text(self, rel: str) -> str:
        try:
            return self.read(rel).decode()
        except UnicodeDecodeError:
            raise DataError(f"corrupt file {self.label(rel)}: not text") from None

    def listdir(self, rel: str) -> list[str]:
        """File names directly under ``rel`` (a folder), sorted."""
        if self.zip:
            pre = self.prefix + rel.rstrip("/") + "/"
            return sorted(n[len(pre):] for n in self.names
                          if n.startswith(pre) and "/" not in n[len(pre):] and n != pre)
        d = self.root / rel
        return sorted(p.name for p in d.iterdir() if p.is_file()) if d.is_dir() else []

    def identity(self) -> str:
        st = self.path.stat()
        return f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _decode(blob: bytes, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im.load()
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)  # grayscale/CMYK -> 3 channels
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"corrupt image {where}: {e}") from None
    if arr.shape != (64, 64, 3):
        raise DataError(f"unexpected image size {arr.shape[:2]} in {where}; Tiny ImageNet is 64x64")
    return arr


def select_classes(wnids: list[str], n: int, class_list: tuple[str, ...] | None) -> list[str]:
    """The first ``n`` wnids in sorted order, or the explicit list (checked against wnids.txt)."""
    if class_list:
        unknown = [c for c in class_list if c not in wnids]
        if unknown:
            raise DataError(f"class {unknown[0]!r} is not in wnids.txt ({len(wnids)} classes there)")
        return sorted(dict.fromkeys(class_list))
    if n > len(wnids):
        raise DataError(f"classes: asked for {n} but wnids.txt has only {len(wnids)}")
    return sorted(wnids)[:n]


def _index_official(src: _Source, classes: list[str]) -> tuple[list[tuple[str, int]], int]:
    """(file, label) of every train image, then every official val image; and the train count."""
    index = {c: i for i, c in enumerate(classes)}
    jobs: list[tuple[str, int]] = []
    for c in classes:
        files = [f for f in src.listdir(f"train/{c}/images") if f.lower().endswith((".jpeg", ".jpg"))]
        if not files:
            raise DataError(f"class {c} has no training images in {src.label(f'train/{c}/images')}")
        jobs += [(f"train/{c}/images/{f}", index[c]) for f in files]
    n_train = len(jobs)
    ann = src.text("val/val_annotations.txt").splitlines()
    for line in ann:
        parts = line.split("\t")
        if len(parts) >= 2 and parts[1] in index:
            jobs.append((f"val/images/{parts[0]}", index[parts[1]]))
    if len(jobs) == n_train:
        raise DataError(f"no official val images for the chosen classes in {src.label('val/val_annotations.txt')}")
    return jobs, n_train


def _decode_official(src: _Source, jobs: list[tuple[str, int]], n_train: int) -> dict[str, np.ndarray]:
    x = np.empty((len(jobs), 64, 64, 3), dtype=np.uint8)
    y = np.array([lab for _, lab in jobs], dtype=np.int64)
    for i, (rel, _) in enumerate(tqdm(jobs, desc="decoding Tiny ImageNet", unit="img", disable=None)):
        x[i] = _decode(src.read(rel), src.label(rel))
    return {"train_x": x[:n_train], "train_y": y[:n_train], "test_x": x[n_train:], "test_y": y[n_train:]}


# --- cache --------------------------------------------------------------------------------------
def default_cache_dir(cfg: TrialConfig) -> Path:
    if cfg.cache_dir:
        return Path(os.path.expanduser(cfg.cache_dir))  # (Path.expanduser raises for an unknown ~user)
    return Path(os.path.expanduser(os.environ.get("REGSTUDY_CACHE", "~/.cache/regstudy")))


def resolve_source(cfg: TrialConfig) -> Path:
    """The data path given, or the official archive downloaded (and verified) into the cache."""
    if cfg.data:
        return Path(cfg.data).expanduser()
    return fetch(cfg.download_url, default_cache_dir(cfg) / "tiny-imagenet-200.zip", cfg.download_md5)


def _cached(cdir: Path, n_classes: int) -> dict[str, np.ndarray] | None:
    """The decoded arrays under ``cdir`` (memory-mapped), or None when there are none or they are
    damaged (a truncated or missing file, shapes that do not fit): then the caller decodes again."""
    if not (cdir / "meta.json").exists():
        return None
    try:
        arrays = {n: np.load(cdir / f"{n}.npy", mmap_mode="r") for n in ARRAYS}
        for split in ("train", "test"):
            x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
            if x.shape[1:] != (64, 64, 3) or y.shape != (len(x),) or len(y) == 0:
                raise ValueError(f"{split}_x {x.shape} and {split}_y {y.shape} do not fit together")
            if int(y.min()) < 0 or int(y.max()) >= n_classes:
                raise ValueError(f"{split}_y holds labels outside 0..{n_classes - 1}")
        return arrays
    except (OSError, ValueError, EOFError) as e:
        log.warning("the decoded-image cache %s is damaged (%s); decoding the images again", cdir,
                    " ".join(str(e).split()))
        shutil.rmtree(cdir, ignore_errors=True)
        return None


def n_val_per_class(n: int, fraction: float) -> int:
    """How many of a class's ``n`` training images the stratified validation split takes."""
    return max(1, int(round(fraction * n))) if n > 1 else 0


def check_splits(classes: list[str], train_counts: np.ndarray, test_counts: np.ndarray,
                 val_fraction: float) -> None:
    """Every split (train, validation, test) keeps at least one image of every class."""
    rule = "every split (train, validation, test) needs at least one image of every class"
    for c, n_train, n_test in zip(classes, train_counts, test_counts):
        n_train, n_test = int(n_train), int(n_test)
        k = n_val_per_class(n_train, val_fraction)
        if k == 0:
            raise DataError(f"class {c} has {n_train} training image{'s' if n_train != 1 else ''}; {rule}, "
                            "so a class needs at least 2 training images")
        if n_train - k < 1:
            raise DataError(f"val_fraction={val_fraction} leaves class {c} ({n_train} training images) with no "
                            f"training image; {rule}: allowed here: val_fraction < {(n_train - 0.5) / n_train:.4g}")
        if n_test < 1:
            raise DataError(f"class {c} has no official val image (the test split); {rule}")


def load_official(cfg: TrialConfig, *, progress: bool = True) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Decoded official train and val (our test) arrays for the chosen classes, from the cache.

    Refuses (DataError) a class list whose splits would miss a class (:func:`check_splits`),
    before decoding anything."""
    src = _Source(resolve_source(cfg))
    wnids = [w.strip() for w in src.text("wnids.txt").split() if w.strip()]
    classes = select_classes(wnids, cfg.classes, cfg.class_list)
    key = hashlib.sha256(json.dumps([CACHE_VERSION, src.identity(), classes]).encode()).hexdigest()[:20]
    cdir = default_cache_dir(cfg) / "decoded" / key
    arrays = _cached(cdir, len(classes))
    if arrays is not None:
        check_splits(classes, np.bincount(arrays["train_y"], minlength=len(classes)),
                     np.bincount(arrays["test_y"], minlength=len(classes)), cfg.val_fraction)
        return arrays, classes, str(src.path)
    jobs, n_train = _index_official(src, classes)
    labels = np.array([lab for _, lab in jobs], dtype=np.int64)
    check_splits(classes, np.bincount(labels[:n_train], minlength=len(classes)),
                 np.bincount(labels[n_train:], minlength=len(classes)), cfg.val_fraction)
    arrays = _decode_official(src, jobs, n_train)
    cdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=cdir.parent))
    try:
        for n in ARRAYS:
            np.save(tmp / f"{n}.npy", arrays[n])
        (tmp / "meta.json").write_text(json.dumps({"source": str(src.path), "classes": classes,
                                                   "version": CACHE_VERSION}))
        try:
            os.replace(tmp, cdir)  # atomic publish; a concurrent writer may have won the race
        except OSError:
            if not (cdir / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return arrays, classes, str(src.path)


# --- splits -------------------------------------------------------------------------------------
def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): ``fraction`` of each class (at least one) goes to val."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = n_val_per_class(len(idx), fraction)
        val_idx.append(idx[:k])
        train_idx.append(idx[k:])
    return np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))


def load_splits(cfg: TrialConfig) -> ImageSplits:
    arrays, classes, source = load_official(cfg)
    tr, va = stratified_split(np.asarray(arrays["train_y"]), cfg.val_fraction, cfg.split_seed)
    train_x = np.asarray(arrays["train_x"])
    return ImageSplits(
        train_x=train_x[tr], train_y=np.asarray(arrays["train_y"])[tr],
        val_x=train_x[va], val_y=np.asarray(arrays["train_y"])[va],
        test_x=np.asarray(arrays["test_x"]), test_y=np.asarray(arrays["test_y"]),
        classes=classes, source=source,
    )
