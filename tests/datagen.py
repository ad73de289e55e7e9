"""Generate tiny Tiny-ImageNet-layout archives for tests (never the real data)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = "tiny-imagenet-200"


def wnid(i: int) -> str:
    return f"n{i:08d}"


def _jpeg(rgb: np.ndarray, grey: bool = False) -> bytes:
    im = Image.fromarray(rgb)
    if grey:
        im = im.convert("L")
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def class_image(c: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A 64x64 image whose colour and stripe direction depend on the class: learnable."""
    base = np.zeros((64, 64, 3), np.float32)
    base[..., c % 3] = 180
    if c % 2:
        base[::8] = 255
    else:
        base[:, ::8] = 255
    noise = rng.normal(0, 25, size=base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def make_tiny_imagenet(path: Path, n_classes: int = 4, train_per_class: int = 20,
                       val_per_class: int = 5, extra_wnids: int = 2, grey: tuple[int, int] | None = (0, 0),
                       corrupt: str | None = None, empty_class: int | None = None,
                       as_zip: bool = True, seed: int = 0) -> Path:
    """Write the official layout (zip or directory). ``grey=(class, index)`` makes that
    training image grayscale; ``corrupt`` names a training file (``wnid/k``) to corrupt."""
    rng = np.random.default_rng(seed)
    files: dict[str, bytes] = {}
    ids = [wnid(i) for i in range(n_classes + extra_wnids)]
    files[f"{ROOT}/wnids.txt"] = ("\n".join(reversed(ids)) + "\n").encode()  # unsorted on purpose
    files[f"{ROOT}/words.txt"] = "".join(f"{w}\tthing {w}\n" for w in ids).encode()
    ann = []
    for c, w in enumerate(ids[:n_classes]):
        if c == empty_class:
            continue
        for k in range(train_per_class):
            name = f"{ROOT}/train/{w}/images/{w}_{k}.JPEG"
            is_grey = grey is not None and (c, k) == grey
            files[name] = _jpeg(class_image(c, k, rng), grey=is_grey)
            if corrupt == f"{w}/{k}":
                files[name] = b"\xff\xd8\xff\xe0 not really a jpeg"
        files[f"{ROOT}/train/{w}/{w}_boxes.txt"] = b""
        for k in range(val_per_class):
            fname = f"val_{c}_{k}.JPEG"
            files[f"{ROOT}/val/images/{fname}"] = _jpeg(class_image(c, 1000 + k, rng))
            ann.append(f"{fname}\t{w}\t0\t0\t63\t63")
    files[f"{ROOT}/val/val_annotations.txt"] = ("\n".join(ann) + "\n").encode()
    files[f"{ROOT}/test/images/test_0.JPEG"] = _jpeg(class_image(0, 9999, rng))
    path = Path(path)
    if as_zip:
        with zipfile.ZipFile(path, "w") as z:
            for name, blob in files.items():
                z.writestr(name, blob)
    else:
        for name, blob in files.items():
            p = path / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(blob)
    return path


BAD_DATA = ("missing", "notzip", "wronglayout", "emptyclass", "corrupt")


def make_bad_data(path: Path, case: str) -> Path:
    """A data source that must be refused: ``case`` in BAD_DATA (``corrupt``: training image 3
    of class 1, i.e. ``wnid(1)/3``)."""
    if case == "notzip":
        path.write_text("hello")
    elif case == "wronglayout":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("something/else.txt", "x")
    elif case == "emptyclass":
        make_tiny_imagenet(path, empty_class=1)
    elif case == "corrupt":
        make_tiny_imagenet(path, corrupt=f"{wnid(1)}/3")
    elif case != "missing":
        raise ValueError(f"unknown bad-data case {case!r}; known: {BAD_DATA}")
    return path


def damage_zip_entry(src: Path, dst: Path, entry: str, n_bytes: int = 4) -> Path:
    """Copy the zip ``src`` to ``dst`` with ``n_bytes`` of ``entry``'s stored data flipped (the
    entry then fails its CRC-32 check, as after a bad download or a disk error)."""
    data = bytearray(Path(src).read_bytes())
    with zipfile.ZipFile(src) as z:
        info = z.getinfo(entry)
    off = info.header_offset  # local file header: 30 bytes, then the name and the extra field
    start = off + 30 + int.from_bytes(data[off + 26:off + 28], "little") + int.from_bytes(data[off + 28:off + 30], "little")
    mid = start + info.compress_size // 2
    for i in range(min(n_bytes, info.compress_size)):
        data[mid + i] ^= 0x55
    Path(dst).write_bytes(bytes(data))
    return Path(dst)
