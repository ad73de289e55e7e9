"""Decoded-array cache: the first load (decode every JPEG, write the .npy cache) vs a cached load.

    python -m benchmarks.cache [--data ../shared/data/tiny-imagenet-25.zip] [--classes 25] [--repeats 3]

Both are ``study.datasets.load_splits`` (the whole path a trial's driver takes: source,
cache, stratified split, arrays in memory) into a fresh temporary cache directory, removed at the
end. The cached load is the median of ``--repeats`` runs; the cache files were just written, so
they are read from the page cache (a cold read adds the disk's time for ~12 KiB per image).
Ends with one line: ``cache first_s=F cached_s=C speedup=F/C``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from study.config import make_config
from study.datasets import load_arrays, load_splits

from .common import DEFAULT_DATA, fmt, machine

FIELDS = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cache", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA), help="Tiny ImageNet zip or directory")
    p.add_argument("--classes", type=int, default=25)
    p.add_argument("--repeats", type=int, default=3, help="cached loads to take the median of")
    args = p.parse_args(argv)
    print(f"machine: {machine()}", flush=True)
    tmp = tempfile.mkdtemp(prefix="regstudy-cache-bench-")
    try:
        cfg = make_config({"data": args.data, "classes": args.classes, "cache_dir": tmp})
        t0 = time.perf_counter()
        first = load_splits(cfg)
        first_s = time.perf_counter() - t0
        n = sum(first.sizes().values())
        print(f"first load (decode {n} JPEGs + write cache + split): {first_s:.2f}s", flush=True)
        times, open_times = [], []
        for _ in range(max(args.repeats, 1)):
            t0 = time.perf_counter()
            load_arrays(cfg)
            open_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            again = load_splits(cfg)
            times.append(time.perf_counter() - t0)
            for f in FIELDS:  # the cache gives the same arrays
                if not np.array_equal(getattr(first, f), getattr(again, f)):
                    raise SystemExit(f"cached {f} differs from the first decode")
        cached_s = statistics.median(times)
        print(f"cached load (memory-mapped .npy + split, arrays in memory): "
              f"{', '.join(f'{t:.3f}s' for t in times)}; opening the cache alone "
              f"{statistics.median(open_times) * 1000:.1f} ms", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {"first_s": first_s, "cached_s": cached_s, "speedup": first_s / cached_s}
    print(f"cache first_s={fmt(first_s)} cached_s={cached_s:.3f} speedup={fmt(out['speedup'])}", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main() and 0)
