"""Tiny ImageNet (the study's dataset): the official layout, as a directory or the official zip.

Splits: the official *val* set is labelled and the official *test* set is not, so the study
holds the official val set out as its **test** set and carves a stratified **validation** split
(``val_fraction`` of train, ``split_seed``) out of the official train set for tuning.
``classes: N`` takes the first N wnids in sorted order; ``class_list`` names them.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from . import cache
from .image_files import decode
from .spec import DataError, DatasetSpec, Listing, register, select_first

if TYPE_CHECKING:  # (config imports the dataset table, which imports this module)
    from ..config import TrialConfig

ROOT = "tiny-imagenet-200"
SIDE = 64


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
        return cache.file_identity(self.path)


def select_classes(wnids: list[str], n: int | None, class_list: tuple[str, ...] | None) -> list[str]:
    """The first ``n`` wnids in sorted order, or the explicit list (checked against wnids.txt)."""
    if class_list:
        unknown = [c for c in class_list if c not in wnids]
        if unknown:
            raise DataError(f"class {unknown[0]!r} is not in wnids.txt ({len(wnids)} classes there)")
        return sorted(dict.fromkeys(class_list))
    return select_first(sorted(wnids), n, "wnids.txt")


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
    x = np.empty((len(jobs), SIDE, SIDE, 3), dtype=np.uint8)
    y = np.array([lab for _, lab in jobs], dtype=np.int64)
    for i, (rel, _) in enumerate(tqdm(jobs, desc="decoding Tiny ImageNet", unit="img", disable=None)):
        x[i] = decode(src.read(rel), src.label(rel), expect=(SIDE, SIDE))
    return {"train_x": x[:n_train], "train_y": y[:n_train], "test_x": x[n_train:], "test_y": y[n_train:]}


def open_listing(cfg: TrialConfig, path: Path) -> Listing:
    src = _Source(path)
    wnids = [w.strip() for w in src.text("wnids.txt").split() if w.strip()]
    classes = select_classes(wnids, cfg.classes, cfg.class_list)
    jobs, n_train = _index_official(src, classes)
    labels = np.array([lab for _, lab in jobs], dtype=np.int64)
    counts = {"train": np.bincount(labels[:n_train], minlength=len(classes)),
              "test": np.bincount(labels[n_train:], minlength=len(classes))}
    return Listing(classes=classes, counts=counts, identity=[src.identity()],
                   decode=lambda: _decode_official(src, jobs, n_train), source=str(src.path),
                   split_words={"test": "official val image"})


register(DatasetSpec(
    name="tinyimagenet", open=open_listing,
    summary="Tiny ImageNet (200 classes of 64x64 images; the study used the first 25): "
            "official val = test, validation carved from train",
    layout="the official tiny-imagenet-200 directory or zip",
    archive="tiny-imagenet-200.zip", url="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
    md5="90528d7ca1a48142e341f4ef8d21d0de"))


