"""ImageFolder: your own images, one folder per class, as a directory or a zip.

Layouts (a zip, or a directory, may wrap either in one top folder, as zips usually do):

* ``CLASS/IMAGE``: one pool; a stratified **test** split (``test_fraction`` of each class) and
  then a **validation** split (``val_fraction``) are carved out of it with ``split_seed``;
* ``train/CLASS/IMAGE`` with ``val/CLASS/IMAGE`` and ``test/CLASS/IMAGE`` where you have them:
  a split that is there is used as given, one that is not is carved out of ``train/``.

Classes are the sorted folder names (of ``train/`` in the second layout; a class folder in
``val/`` or ``test/`` must be one of them). Images may be nested deeper inside a class folder.
``classes: N`` takes the first N classes in that order; ``class_list`` names them.

Files: hidden ones (``.DS_Store``, ``__MACOSX/``, any name starting with a dot) are ignored, and
so are files without an image extension (``image_files.EXTENSIONS``); a file with one that does
not decode is an error naming it. Every image, of any size and any mode PIL opens, is decoded
once to ``image_size`` x ``image_size`` RGB (``image_files.decode``: shorter side to
``image_size``, bilinear and antialiased, then the centre square) and cached; the cache key holds
``image_size`` and the source's identity (a zip's path, size and mtime; for a directory, a digest
of every file's relative path, size and mtime), so adding, removing or editing a file decodes again.
"""
from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from . import cache, image_files
from .spec import SPLITS, DataError, DatasetSpec, Listing, register, select_first

if TYPE_CHECKING:  # (config imports the dataset table, which imports this module)
    from ..config import TrialConfig

LAYOUTS = ("CLASS/IMAGE (one pool: validation and test are carved out of it), or train/CLASS/IMAGE with "
           "val/CLASS/IMAGE and test/CLASS/IMAGE where you have them (a missing one is carved out of train/)")
RESIZE = "shorter side to image_size (bilinear, antialiased), then the centre square"


def hidden(rel: str) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in rel.split("/"))


def is_image(rel: str) -> bool:
    return rel.lower().endswith(image_files.EXTENSIONS)


# --- the files of a directory or a zip ---------------------------------------------------------
class _Source:
    """Every non-hidden file (relative posix path) and folder of a directory or a zip."""

    def __init__(self, path: Path):
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if not path.exists():
            raise DataError(f"data not found: {path} (give an ImageFolder directory or zip: {LAYOUTS})")
        self.sizes: dict[str, tuple[int, int]] = {}  # directory: rel -> (size, mtime_ns)
        if path.is_dir():
            files, dirs = self._walk()
        else:
            try:
                self.zip = zipfile.ZipFile(path)
                names = self.zip.namelist()
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{path} is neither a directory nor a zip archive "
                                f"({' '.join(str(e).split())})") from None
            files = [n for n in names if not n.endswith("/")]
            dirs = {n.rstrip("/") for n in names if n.endswith("/")}
        files = [f for f in files if not hidden(f)]
        dirs = {str(p) for f in files for p in PurePosixPath(f).parents if str(p) != "."} | \
               {d for d in dirs if d and not hidden(d)}
        self.prefix = self._wrapper(files, dirs)
        n = len(self.prefix)
        self.files = sorted(f[n:] for f in files if f.startswith(self.prefix))
        self.dirs = {d[n:] for d in dirs if d.startswith(self.prefix) and len(d) > n}

    def _walk(self) -> tuple[list[str], set[str]]:
        files, dirs = [], set()
        for root, dnames, fnames in os.walk(self.path, followlinks=True):
            rel_root = Path(root).relative_to(self.path).as_posix()
            base = "" if rel_root == "." else rel_root + "/"
            dnames[:] = [d for d in dnames if not hidden(d)]
            dirs.update(base + d for d in dnames)
            for f in fnames:
                if hidden(f):
                    continue
                try:
                    st = os.stat(os.path.join(root, f))
                except OSError as e:
                    raise DataError(f"cannot read {os.path.join(root, f)}: {e.strerror or e}") from None
                files.append(base + f)
                self.sizes[base + f] = (st.st_size, st.st_mtime_ns)
        return files, dirs

    @staticmethod
    def _wrapper(files: list[str], dirs: set[str]) -> str:
        """"TOP/" when everything is inside one folder that is neither a split nor a class folder
        (it has no images of its own): a zip made of a folder. Else ""."""
        tops = {d for d in dirs if "/" not in d}
        if len(tops) != 1 or any("/" not in f and is_image(f) for f in files):
            return ""
        top = next(iter(tops))
        inner = [f[len(top) + 1:] for f in files if f.startswith(top + "/")]
        if top in SPLITS or any("/" not in f and is_image(f) for f in inner):
            return ""
        return top + "/"

    def label(self, rel: str) -> str:
        return f"{self.path}:{self.prefix}{rel}" if self.zip else str(self.path / (self.prefix + rel))

    def read(self, rel: str) -> bytes:
        try:
            if self.zip:
                return self.zip.read(self.prefix + rel)
            return (self.path / (self.prefix + rel)).read_bytes()
        except (KeyError, FileNotFoundError):
            raise DataError(f"{self.label(rel)} disappeared while reading the ImageFolder") from None
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:  # a damaged zip: CRC, truncation
            why = "it fails its CRC-32 check" if "CRC" in str(e) else " ".join(str(e).split())
            raise DataError(f"corrupt image {self.label(rel)}: {why}; the zip is damaged") from None
        except OSError as e:
            raise DataError(f"cannot read {self.label(rel)}: {e.strerror or e}") from None

    def identity(self) -> str:
        if self.zip:
            return cache.file_identity(self.path)
        return cache.tree_identity(self.path, ((rel, *self.sizes[rel]) for rel in sorted(self.sizes)
                                               if is_image(rel)))  # (a README changes nothing decoded)


# --- the layout --------------------------------------------------------------------------------
def _class_folders(src: _Source, base: str) -> dict[str, list[str]]:
    """Class folder -> its images (sorted relative paths), for the folders directly under ``base``
    ("" or "train/"...); images directly in ``base`` are a layout error."""
    where = src.label(base.rstrip("/")).rstrip("/:")
    loose = [f for f in src.files if f.startswith(base) and "/" not in f[len(base):] and is_image(f)]
    if loose:
        expected = f"{base}CLASS/IMAGE" if base else "CLASS/IMAGE"
        raise DataError(f"{src.label(loose[0])}: an image outside a class folder; expected {expected}. "
                        f"Accepted layouts: {LAYOUTS}")
    names = sorted(d[len(base):] for d in src.dirs if d.startswith(base) and "/" not in d[len(base):])
    out: dict[str, list[str]] = {c: [] for c in names}
    for f in src.files:
        if f.startswith(base) and is_image(f):
            out[f[len(base):].split("/", 1)[0]].append(f)
    if not names:
        raise DataError(f"{where}: no class folders; accepted layouts: {LAYOUTS}")
    for c, imgs in out.items():
        if not imgs:
            raise DataError(f"class {c} has no images: {src.label(base + c)} holds no file with an image "
                            f"extension ({', '.join(image_files.EXTENSIONS)})")
    return out


def index(src: _Source) -> dict[str, dict[str, list[str]]]:
    """split -> class -> images, for the splits the source gives."""
    tops = {d for d in src.dirs if "/" not in d}
    given = [s for s in SPLITS if s in tops]
    if not given:
        return {"train": _class_folders(src, "")}
    if "train" not in given:
        raise DataError(f"{src.path} has {'/ and '.join(given)}/ but no train/; accepted layouts: {LAYOUTS}")
    others = sorted(tops - set(SPLITS))
    if others:
        raise DataError(f"{src.label(others[0])}: a folder beside {', '.join(s + '/' for s in given)} that is not "
                        f"a split (split folders are named train, val, test); accepted layouts: {LAYOUTS}")
    out = {s: _class_folders(src, f"{s}/") for s in given}
    for s in given[1:]:
        unknown = sorted(set(out[s]) - set(out["train"]))
        if unknown:
            raise DataError(f"{src.label(f'{s}/{unknown[0]}')}: class {unknown[0]!r} is not a class of train/ "
                            f"(a {s}/ class folder must have one in train/)")
    return out


def select_classes(src: _Source, classes: list[str], n: int | None, class_list: tuple[str, ...] | None) -> list[str]:
    if class_list:
        unknown = [c for c in class_list if c not in classes]
        if unknown:
            raise DataError(f"class_list: {unknown[0]!r} is not a class folder of {src.path}; allowed: "
                            f"{', '.join(classes)}")
        return sorted(dict.fromkeys(class_list))
    return select_first(classes, n, f"the ImageFolder {src.path}")


def _decode(src: _Source, jobs: dict[str, list[tuple[str, int]]], size: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    bar = tqdm(total=sum(map(len, jobs.values())), desc="decoding ImageFolder", unit="img", disable=None)
    with bar:
        for s, items in jobs.items():
            x = np.empty((len(items), size, size, 3), dtype=np.uint8)
            for i, (rel, _) in enumerate(items):
                x[i] = image_files.decode(src.read(rel), src.label(rel), size=size)
                bar.update()
            out[f"{s}_x"], out[f"{s}_y"] = x, np.array([lab for _, lab in items], dtype=np.int64)
    return out


def open_listing(cfg: TrialConfig, path: Path) -> Listing:
    src = _Source(path)
    folders = index(src)
    if len(folders["train"]) < 2:
        raise DataError(f"{src.path}: {len(folders['train'])} class folder ({', '.join(folders['train'])}); a "
                        f"classifier needs at least two. Accepted layouts: {LAYOUTS}")
    classes = select_classes(src, sorted(folders["train"]), cfg.classes, cfg.class_list)
    jobs = {s: [(rel, i) for i, c in enumerate(classes) for rel in by_class.get(c, [])]
            for s, by_class in folders.items()}
    counts = {s: np.array([len(folders[s].get(c, [])) for c in classes]) for s in folders}
    return Listing(classes=classes, counts=counts,
                   identity=[src.identity(), {"image_size": cfg.image_size, "resize": RESIZE}],
                   decode=lambda: _decode(src, jobs, cfg.image_size), source=str(path),
                   split_words={"val": "image in val/", "test": "image in test/"})


register(DatasetSpec(
    name="imagefolder", open=open_listing,
    summary="your own images, one folder per class (a pool, or train/ val/ [test/]), as a directory or zip; "
            f"resized once to image_size ({RESIZE})",
    layout=f"an ImageFolder directory or zip: {LAYOUTS}",
    defaults={"classes": None}))
