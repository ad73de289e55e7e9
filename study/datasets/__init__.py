"""The image dataset table: every dataset is one module in this package that registers a
:class:`DatasetSpec`; :func:`load_splits` is the one way a trial's images are read.

The path is the same for every dataset: the source (``--data``, else the official archive
downloaded into the cache and checked against its MD5) -> its listing (classes, images per
split) -> the split check -> the decoded arrays (cached) -> the given splits, the missing ones
carved (``study.datasets.splits``) -> the training split's channel statistics (cached), which
the image task normalises with. Nothing about validation or test images reaches the statistics.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..download import fetch
from . import cache, splits
from .spec import DATASETS, SPLITS, DataError, DatasetSpec, ImageSplits, Listing, register

if TYPE_CHECKING:
    from ..config import TrialConfig

__all__ = ["DATASETS", "DataError", "DatasetSpec", "ImageSplits", "Listing", "get", "load_arrays",
           "load_splits", "names", "register", "resolve_source"]

_HELPERS = {"spec", "cache", "splits", "image_files"}
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in _HELPERS:
        importlib.import_module(f"{__name__}.{_m.name}")


def names() -> list[str]:
    return list(DATASETS)


def get(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise KeyError(name)
    return DATASETS[name]


def resolve_source(cfg: TrialConfig) -> Path:
    """The data path given, or the dataset's official archive fetched (and verified) into the cache."""
    if cfg.data:
        return Path(cfg.data).expanduser()
    spec = get(cfg.dataset)
    if spec.url is None and cfg.download_url is None:
        raise DataError(f"dataset {spec.name!r} has no download; give its data with --data ({spec.layout})")
    url = cfg.download_url or spec.url
    archive = spec.archive or Path(url).name
    return fetch(url, cache.default_cache_dir(cfg) / archive, cfg.download_md5 or spec.md5)


def load_arrays(cfg: TrialConfig) -> tuple[dict[str, np.ndarray], Listing, Path]:
    """The decoded arrays of the splits the source gives, from the cache or decoded now; the
    listing; and the cache entry. Refuses (DataError) a class choice whose splits would miss a
    class before decoding anything."""
    spec = get(cfg.dataset)
    listing = spec.open(cfg, resolve_source(cfg))
    splits.check(listing.classes, listing.counts, cfg.val_fraction, cfg.test_fraction, listing.split_words)
    given = [s for s in SPLITS if s in listing.counts]
    cdir = cache.entry_dir(cfg, spec.name, listing.identity, listing.classes)
    arrays = cache.read(cdir, given, len(listing.classes))
    if arrays is None:
        arrays = listing.decode()
        cache.write(cdir, arrays, {"dataset": spec.name, "source": listing.source, "classes": listing.classes})
        arrays = cache.read(cdir, given, len(listing.classes)) or arrays
    return arrays, listing, cdir


def load_splits(cfg: TrialConfig) -> ImageSplits:
    arrays, listing, cdir = load_arrays(cfg)
    parts = splits.carve(arrays, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    stats_file = cdir / f"stats-{cfg.val_fraction!r}-{cfg.test_fraction!r}-{cfg.split_seed}.json"
    stats = cache.read_json(stats_file)
    if not (isinstance(stats, dict) and len(stats.get("mean", ())) == 3 and len(stats.get("std", ())) == 3):
        mean, std = splits.channel_stats(parts["train"][0])
        stats = {"mean": mean, "std": std, "n_train": int(len(parts["train"][1]))}
        cache.write_json(stats_file, stats)
    return ImageSplits(
        train_x=parts["train"][0], train_y=parts["train"][1],
        val_x=parts["val"][0], val_y=parts["val"][1],
        test_x=parts["test"][0], test_y=parts["test"][1],
        classes=listing.classes, source=listing.source,
        mean=tuple(stats["mean"]), std=tuple(stats["std"]), dataset=cfg.dataset,
    )
