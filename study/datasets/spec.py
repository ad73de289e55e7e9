"""What an image dataset declares, and what loading one gives: the types shared by the table,
the readers and the image task.

A dataset is one module in this package that registers a :class:`DatasetSpec`. Its ``open``
reads the source's *listing* (class names, images per class and split, the source's identity)
without decoding anything, so that a bad class choice or a split that would miss a class is
refused in a second; decoding happens once, and the arrays are cached (``study.datasets.cache``).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # (config imports the dataset table, which imports this module)
    from ..config import TrialConfig

SPLITS = ("train", "val", "test")


class DataError(RuntimeError):
    """The data is missing, not in the dataset's layout, or an image cannot be decoded."""


@dataclass
class Listing:
    """A source, read but not decoded.

    ``counts``: images per class (indexed like ``classes``) for each split the source *gives*;
    ``train`` always, ``val`` and ``test`` when the source has them (the others are carved out
    of train with the fixed split seed). ``decode()`` returns uint8 arrays ``<split>_x``
    (N, H, W, 3) and int64 ``<split>_y`` for exactly those splits. ``identity``: whatever the
    decoded arrays depend on besides the dataset and the classes (the source file, the decode
    size), JSON-able: the cache key. ``split_words``: how the dataset names a given split in
    messages (Tiny ImageNet's test split is its official val set)."""
    classes: list[str]
    counts: dict[str, np.ndarray]
    identity: list[Any]
    decode: Callable[[], dict[str, np.ndarray]]
    source: str
    split_words: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DatasetSpec:
    """One row of the dataset table.

    ``open(cfg, path) -> Listing``; ``archive``/``url``/``md5``: the official download, fetched
    into the cache when no ``data`` is given (None: the dataset must be given with ``--data``);
    ``defaults``: settings whose default differs for this dataset (e.g. ``image_size``);
    ``summary``: one line for listings; ``layout``: what ``--data`` may point at."""
    name: str
    open: Callable[[TrialConfig, Path], Listing]
    summary: str
    layout: str
    archive: str | None = None
    url: str | None = None
    md5: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class ImageSplits:
    """Decoded uint8 images (N, H, W, 3) and int64 labels for each split, plus class names and
    the per-channel mean and standard deviation of the training split (in [0, 1] units)."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    source: str
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    dataset: str = "tinyimagenet"

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}


DATASETS: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} registered twice")
    DATASETS[spec.name] = spec
    return spec


def select_first(names: list[str], n: int | None, what: str) -> list[str]:
    """The first ``n`` class names in the order given (None: all), refused when there are fewer."""
    if n is None:
        return list(names)
    if n > len(names):
        raise DataError(f"classes: asked for {n} but {what} has only {len(names)}")
    return list(names[:n])
