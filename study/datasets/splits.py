"""Train, validation and test splits: the ones a dataset gives, the others carved, stratified.

Rules, the same for every dataset:

* a dataset's own test split (Tiny ImageNet's labelled official val set, CIFAR's test batch,
  an ImageFolder's ``test/``) is the test set; where there is none, ``test_fraction`` of each
  class of train is carved out (seeded by ``split_seed``);
* a dataset's own validation split (an ImageFolder's ``val/``) is the validation set; where
  there is none, ``val_fraction`` of each class of what is left of train is carved out;
* every split keeps at least one image of every class, checked before anything is decoded.

``split_seed`` is fixed across trial seeds, so every seed sees the same split.
"""
from __future__ import annotations

import numpy as np

from .spec import DataError

RULE = "every split (train, validation, test) needs at least one image of every class"


def n_val_per_class(n: int, fraction: float) -> int:
    """How many of a class's ``n`` training images a carved split takes (at least one)."""
    return max(1, int(round(fraction * n))) if n > 1 else 0


def _rng(seed: int, what: str) -> np.random.Generator:
    # val keeps the stream it always had (seed alone); the test carve gets its own
    return np.random.default_rng(seed if what == "val" else [seed, 1])


def stratified_split(labels: np.ndarray, fraction: float, seed: int, what: str = "val"
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, carved): ``fraction`` of each class (at least one) is carved."""
    rng = _rng(seed, what)
    kept, carved = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = n_val_per_class(len(idx), fraction)
        carved.append(idx[:k])
        kept.append(idx[k:])
    return np.sort(np.concatenate(kept)), np.sort(np.concatenate(carved))


def check(classes: list[str], counts: dict[str, np.ndarray], val_fraction: float, test_fraction: float,
          words: dict[str, str] | None = None) -> None:
    """Refuse (DataError) a class choice or fractions that would leave a split without a class."""
    words = words or {}
    carve = [(s, f) for s, f in (("test", test_fraction), ("val", val_fraction)) if s not in counts]
    for i, c in enumerate(classes):
        for s in ("val", "test"):
            if s in counts and int(counts[s][i]) < 1:
                what = words.get(s, f"{s} image")
                raise DataError(f"class {c} has no {what} (the {'validation' if s == 'val' else 'test'} split); {RULE}")
        n = int(counts["train"][i])
        for s, fraction in carve:
            k = n_val_per_class(n, fraction)
            if k == 0:
                raise DataError(f"class {c} has {n} training image{'s' if n != 1 else ''}; {RULE}, so a class "
                                f"needs at least {len(carve) + 1} training images")
            if n - k < 1:
                key = "val_fraction" if s == "val" else "test_fraction"
                raise DataError(f"{key}={fraction} leaves class {c} ({n} training images) with no training "
                                f"image; {RULE}: allowed here: {key} < {(n - 0.5) / n:.4g}")
            n -= k


def carve(arrays: dict[str, np.ndarray], val_fraction: float, test_fraction: float, seed: int
          ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(x, y) of train, val and test: the given splits, the missing ones carved out of train."""
    x, y = arrays["train_x"], np.asarray(arrays["train_y"])
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    keep = np.arange(len(y))
    for s, fraction in (("test", test_fraction), ("val", val_fraction)):
        if f"{s}_x" in arrays:
            out[s] = (np.asarray(arrays[f"{s}_x"]), np.asarray(arrays[f"{s}_y"]))
            continue
        kept, taken = stratified_split(y[keep], fraction, seed, s)
        out[s] = (np.asarray(x[keep[taken]]), y[keep[taken]])
        keep = keep[kept]
    out["train"] = (np.asarray(x[keep]) if len(keep) < len(y) else np.asarray(x), y[keep])
    return out


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images (N, H, W, 3), in [0, 1] units,
    accumulated in float64 in chunks of about 4M values (no float copy of the whole split)."""
    chunk = max(1, (1 << 22) // max(1, int(np.prod(x.shape[1:]))))
    s = np.zeros(3)
    ss = np.zeros(3)
    n = 0
    for i in range(0, len(x), chunk):
        b = np.asarray(x[i:i + chunk], dtype=np.float64).reshape(-1, 3) / 255.0
        s += b.sum(0)
        ss += np.square(b).sum(0)
        n += len(b)
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - np.square(mean), 0.0))
    std = np.where(std > 0, std, 1.0)  # a constant channel: centred, not divided by zero
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
