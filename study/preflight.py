"""Checks of what a command will read and write on this machine, made before any work starts.

A path that cannot be used is found in a second, not after an hour of training:

* :func:`output_file` / :func:`output_dir`: the path can be written (created, with its missing
  parents). Probed with a temporary file in the nearest existing directory, so a read-only or
  virtual filesystem (``/proc``), a directory where a file is wanted and a file where a directory
  is wanted are all refused; nothing is left behind. Raise :class:`study.cli.UsageError` naming
  the option.
* :func:`config_paths`: the config's own paths on this machine (the data, pretrained weights, the
  cache, NLTK's data directory); :func:`device`: the device asked for is here. Raise
  :class:`study.config.ConfigError` naming the setting.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .cli import UsageError
from .config import ConfigError, TrialConfig


class _Unusable(Exception):
    """The path cannot be used at all (a NUL byte, a name too long, ...); the message says why."""


def _path(value: str | os.PathLike) -> Path:
    text = os.fspath(value)
    if not text or "\x00" in text:
        raise _Unusable("not a usable path")
    return Path(os.path.expanduser(text))  # (Path.expanduser raises for an unknown ~user)


def _stat(p: Path) -> os.stat_result | None:
    try:
        return p.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:  # e.g. ENAMETOOLONG, ELOOP
        raise _Unusable(e.strerror or str(e)) from None


def _exists(p: Path) -> bool:
    return _stat(p) is not None


def _is_dir(p: Path) -> bool:
    st = _stat(p)
    return st is not None and stat.S_ISDIR(st.st_mode)


def _is_file(p: Path) -> bool:
    st = _stat(p)
    return st is not None and stat.S_ISREG(st.st_mode)


def _nearest_existing(p: Path) -> Path:
    for a in (p, *p.parents):
        if _exists(a):
            return a
    return Path(".")


def _probe(directory: Path) -> str | None:
    """None if a file can be created in ``directory``, else why not."""
    try:
        fd, name = tempfile.mkstemp(prefix=".regstudy-probe.", dir=directory)
    except OSError as e:
        return e.strerror or str(e)
    os.close(fd)
    os.unlink(name)
    return None


def _dir_problem(p: Path) -> str | None:
    base = _nearest_existing(p)
    if not _is_dir(base):
        return "is a file, not a directory" if base == p else f"{base} is a file, not a directory"
    why = _probe(base)
    return f"cannot write in {base} ({why})" if why else None


def _file_problem(p: Path) -> str | None:
    if _is_dir(p):
        return "is a directory; give a file name"
    if _exists(p):
        try:
            with open(p, "a"):  # (append: the file is not changed)
                pass
        except OSError as e:
            return f"cannot write it ({e.strerror or e})"
        why = _probe(p.parent)  # (it is written as a temporary file beside it, then renamed)
        return f"cannot write in {p.parent} ({why})" if why else None
    base = _nearest_existing(p.parent)
    if not _is_dir(base):
        return f"{base} is a file, not a directory"
    return _dir_problem(base)


def _checked(path: str | os.PathLike, option: str, problem) -> Path:
    try:
        p = _path(path)
        why = problem(p)
    except _Unusable as e:
        why = str(e)
    if why:
        raise UsageError(f"{option} {path}: {why}")
    return p


def output_dir(path: str | os.PathLike, option: str) -> Path:
    """``path`` as an output directory, or UsageError naming ``option``."""
    return _checked(path, option, _dir_problem)


def output_file(path: str | os.PathLike, option: str) -> Path:
    """``path`` as an output file (replaced when written), or UsageError naming ``option``."""
    return _checked(path, option, _file_problem)


def config_paths(cfg: TrialConfig) -> None:
    """The paths of ``cfg`` that this machine reads or writes exist or can be made."""
    def check(key: str, value: str, test) -> None:
        try:
            why = test(_path(value))
        except _Unusable as e:
            why = str(e)
        if why:
            raise ConfigError(f"{key}: {value}: {why}")

    if cfg.task == "image":
        if cfg.data:
            try:
                found = _exists(_path(cfg.data))
            except _Unusable as e:
                raise ConfigError(f"data: {cfg.data}: {e}") from None
            if not found:  # (in the words of study.run and the loader)
                from .datasets import get
                raise ConfigError(f"data not found: {cfg.data} (give {get(cfg.dataset).layout})")
        from .datasets.cache import default_cache_dir
        check("cache_dir", str(default_cache_dir(cfg)), _dir_problem)
    if cfg.task == "pos" and cfg.corpus == "conllu":
        from .conllu_corpus import LAYOUT
        try:
            p = _path(cfg.data or "")
            found, usable = _exists(p), _is_file(p) or _is_dir(p)
        except _Unusable as e:
            raise ConfigError(f"data: {cfg.data}: {e}") from None
        if not found:  # (in the words of study.run and the reader)
            raise ConfigError(f"data not found: {cfg.data} (give {LAYOUT})")
        if not usable:
            raise ConfigError(f"data: {cfg.data}: not a file or a directory (give {LAYOUT})")
    if cfg.task == "pos" and cfg.nltk_data:
        check("nltk_data", cfg.nltk_data, lambda p: "is a file, not a directory"
              if _exists(p) and not _is_dir(p) else None)
    if cfg.pretrained:
        from .models import pretrained_path
        check("pretrained", cfg.pretrained, lambda p: None if _is_file(pretrained_path(cfg.pretrained, cfg.model)) else
              f"weights file not found: {pretrained_path(cfg.pretrained, cfg.model)}")


def device(cfg: TrialConfig) -> None:
    """The device ``cfg`` asks for is on this machine."""
    if cfg.device == "cuda":
        from .training import pick_device
        pick_device(cfg.device)
