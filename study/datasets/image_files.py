"""Decoding one image file to uint8 RGB (H, W, 3), the same way for every dataset read from files.

Any mode PIL opens becomes RGB: grayscale and CMYK are converted, palette images go through
RGBA (so a transparent palette entry is handled as PIL documents), and an alpha channel is
dropped (colour values are kept as stored, not composited on a background). 16-bit and float
grayscale (``I;16``, ``I``, ``F``) are scaled from their own value range to 0..255.

``size``: resize rule for datasets whose images come in any size (ImageFolder): the shorter
side is scaled to ``size`` (bilinear, antialiased: torchvision's ``resize`` on PIL images), then
the centre ``size`` x ``size`` square is cropped, so the aspect ratio is never distorted.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from .spec import DataError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm")


def _rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo) * 255.0
        im = Image.fromarray(np.round(a).astype(np.uint8), mode="L")
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")
    return im if im.mode == "RGB" else im.convert("RGB")


def decode(blob: bytes, where: str, *, size: int | None = None,
           expect: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 (H, W, 3) of the image in ``blob``; ``where`` names it in errors (a corrupt or
    unreadable file is a DataError naming its path). ``expect``: the only (H, W) allowed."""
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im.load()
            im = _rgb(im)
            if size is not None:
                from torchvision.transforms import InterpolationMode
                from torchvision.transforms import functional as TF

                im = TF.center_crop(TF.resize(im, size, interpolation=InterpolationMode.BILINEAR,
                                              antialias=True), [size, size])
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"corrupt image {where}: {' '.join(str(e).split())}") from None
    if expect is not None and arr.shape[:2] != expect:
        raise DataError(f"unexpected image size {arr.shape[:2]} in {where}; expected {expect[0]}x{expect[1]}")
    return arr
