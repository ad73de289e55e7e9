"""Generate small ImageFolder trees for tests: both layouts, a directory or a zip, images of mixed
sizes and of every mode the loader must take (JPEG, PNG, WebP, L, RGBA, CMYK, P, I;16).

Colours carry meaning: training images are red-dominant and given val/ and test/ images
blue-dominant (so a split's origin, or a statistic that leaks val/test pixels, shows), with
seeded noise that makes every image unique (so disjointness can be checked on decoded bytes).
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

# (format for PIL, extension, mode to convert to)
KINDS = (("JPEG", ".jpg", "RGB"), ("PNG", ".png", "RGB"), ("WEBP", ".webp", "RGB"), ("PNG", ".png", "L"),
         ("PNG", ".png", "RGBA"), ("JPEG", ".jpeg", "CMYK"), ("PNG", ".png", "P"), ("PNG", ".png", "I;16"))
SIZES = ((64, 64), (80, 48), (40, 96), (120, 90), (33, 50))  # (width, height): both orientations
SPLIT_COLOUR = {"train": (200, 40, 40), "val": (40, 40, 200), "test": (40, 40, 200)}


def cls(i: int) -> str:
    return f"class_{i:02d}"


def image_name(split: str, c: int, k: int) -> str:
    """The file of image ``k`` of class ``c`` in ``split``, relative to the split's base folder."""
    return f"{cls(c)}/{split}_{k:03d}{KINDS[(k + c) % len(KINDS)][1]}"


def encode(rgb: np.ndarray, fmt: str, mode: str) -> bytes:
    im = Image.fromarray(rgb)
    if mode == "RGBA":
        im = im.convert("RGBA")
        im.putalpha(128)
    elif mode == "P":
        im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    elif mode == "I;16":
        grey = np.asarray(im.convert("L"), dtype=np.uint16) * 257
        im = Image.fromarray(grey)  # uint16: mode I;16
    elif mode != "RGB":
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def picture(split: str, c: int, k: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    w, h = size
    base = np.array(SPLIT_COLOUR[split], np.float32) + 8 * c
    noise = rng.normal(0, 20, size=(h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def three_bands(width: int = 90, height: int = 30) -> bytes:
    """A PNG with a red, a green and a blue third, side by side: the centre crop of the shorter
    side's resize keeps only (most of) the green one."""
    a = np.zeros((height, width, 3), np.uint8)
    a[:, :width // 3, 0] = 255
    a[:, width // 3:2 * width // 3, 1] = 255
    a[:, 2 * width // 3:, 2] = 255
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def tree(layout: str = "pool", n_classes: int = 3, per_class: tuple[int, ...] = (10, 12, 15),
         val_per_class: int = 3, test_per_class: int = 0, seed: int = 0) -> dict[str, bytes]:
    """rel path -> bytes. ``pool``: CLASS/IMAGE with ``per_class[c]`` images; ``split``:
    train/CLASS (``per_class``), val/CLASS (``val_per_class``), test/CLASS if ``test_per_class``.
    Every mode and size turns up in every class; plus files that must be ignored."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    plan = [("train", per_class)]
    if layout == "split":
        plan += [("val", (val_per_class,) * n_classes)] + ([("test", (test_per_class,) * n_classes)]
                                                            if test_per_class else [])
    for split, counts in plan:
        base = "" if layout == "pool" else f"{split}/"
        for c in range(n_classes):
            for k in range(counts[c]):
                fmt, _, mode = KINDS[(k + c) % len(KINDS)]
                size = SIZES[(k + 2 * c) % len(SIZES)]
                files[base + image_name(split, c, k)] = encode(picture(split, c, k, size, rng), fmt, mode)
            files[f"{base}{cls(c)}/.DS_Store"] = b"\x00\x00\x00\x01Bud1"
            files[f"{base}{cls(c)}/notes.txt"] = b"not an image"
    files["README.md"] = b"my dataset"
    files["__MACOSX/._x.jpg"] = b"resource fork, not an image"
    return files


def write(files: dict[str, bytes], path: Path, as_zip: bool = False, wrapper: str | None = None,
          empty_dirs: tuple[str, ...] = ()) -> Path:
    """A directory (``path``) or a zip (``path``) of ``files``, inside ``wrapper/`` if given;
    ``empty_dirs``: folders with nothing in them."""
    pre = f"{wrapper}/" if wrapper else ""
    path = Path(path)
    if as_zip:
        with zipfile.ZipFile(path, "w") as z:
            for d in empty_dirs:
                z.writestr(f"{pre}{d}/", b"")
            for name, blob in files.items():
                z.writestr(pre + name, blob)
    else:
        for d in empty_dirs:
            (path / pre / d).mkdir(parents=True, exist_ok=True)
        for name, blob in files.items():
            p = path / pre / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(blob)
    return path


def make_imagefolder(path: Path, layout: str = "pool", as_zip: bool = False, wrapper: str | None = None,
                     corrupt: str | None = None, empty_class: str | None = None, **kw) -> Path:
    """``corrupt``: a rel path (of :func:`tree`) whose bytes are replaced by garbage;
    ``empty_class``: a class folder (rel path, e.g. ``class_03`` or ``train/class_03``) with no image."""
    files = tree(layout, **kw)
    if corrupt:
        assert corrupt in files, corrupt
        files[corrupt] = b"\x89PNG\r\n\x1a\n truncated"
    return write(files, path, as_zip=as_zip, wrapper=wrapper, empty_dirs=(empty_class,) if empty_class else ())
