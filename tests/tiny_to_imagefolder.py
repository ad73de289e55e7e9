"""Re-lay a Tiny ImageNet zip (official layout) out as an ImageFolder tree, for real runs of the
``imagefolder`` dataset on real images::

    python tests/tiny_to_imagefolder.py ../shared/data/tiny-imagenet-25.zip /tmp/tin_if [--classes 10] [--pool]

Split layout (default): ``train/WNID/*.JPEG`` from the official train set and ``val/WNID/*.JPEG``
from the official val set (``val/val_annotations.txt``); the ImageFolder loader then uses
both as given and carves test out of train. ``--pool``: ``WNID/*.JPEG``, train and official val
together, for the loader to carve validation and test. ``--classes N``: the first N wnids in
sorted order. The image bytes are copied as they are (no re-encoding).
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

ROOT = "tiny-imagenet-200/"


def relayout(src: Path, out: Path, pool: bool = False, classes: int | None = None) -> dict[str, int]:
    """Write the tree under ``out`` (which must not exist, or be empty); returns images per split."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} exists and is not empty")
    with zipfile.ZipFile(src) as z:
        names = z.namelist()
        pre = ROOT if f"{ROOT}wnids.txt" in names else ""
        wnids = sorted(w for w in z.read(f"{pre}wnids.txt").decode().split() if w)
        wnids = wnids[:classes] if classes else wnids
        chosen = set(wnids)
        jobs: list[tuple[str, str, str]] = []  # (member, split, wnid)
        for n in names:
            parts = n[len(pre):].split("/")
            if len(parts) == 4 and parts[0] == "train" and parts[2] == "images" and parts[1] in chosen \
                    and parts[3].endswith(".JPEG"):
                jobs.append((n, "train", parts[1]))
        for line in z.read(f"{pre}val/val_annotations.txt").decode().splitlines():
            f = line.split("\t")
            if len(f) >= 2 and f[1] in chosen:
                jobs.append((f"{pre}val/images/{f[0]}", "val", f[1]))
        counts = {"train": 0, "val": 0}
        for member, split, wnid in jobs:
            d = out / wnid if pool else out / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            (d / Path(member).name).write_bytes(z.read(member))
            counts[split] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("zip", type=Path, help="Tiny ImageNet zip in the official layout")
    p.add_argument("out", type=Path, help="the ImageFolder directory to write (new or empty)")
    p.add_argument("--pool", action="store_true", help="one pool CLASS/IMAGE instead of train/ and val/")
    p.add_argument("--classes", type=int, help="only the first N wnids (sorted)")
    a = p.parse_args(argv)
    counts = relayout(a.zip, a.out, pool=a.pool, classes=a.classes)
    print(f"{a.out}: {counts['train']} official train + {counts['val']} official val images "
          f"({'one pool' if a.pool else 'train/ and val/'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
