"""Where an experiment's results live: a local directory, or a bucket (``s3://bucket/prefix``,
``gs://...``) for clusters without a shared filesystem.

With a bucket, Ray Tune's ``storage_path`` is ``URI/NAME/ray``: trials on any node write their
checkpoints and results there, and Tune saves and restores its experiment state there. The
driver's own files (experiment.json, statuses.json, the trial table, the SQLite Optuna study, the
lock) live in a local mirror, ``<cache>/buckets/<bucket/prefix>/NAME``, and are copied to
``URI/NAME/`` after every table refresh: the bucket holds the whole experiment, and ``--resume``
on another machine first copies those files back (to the same local path: Tune's saved searcher
names the study's file by it).

Everything goes through pyarrow's filesystems, as Ray Tune's own storage does: credentials and
endpoints come from the usual environment (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``) or from
the URI's query (``?endpoint_override=HOST:PORT&scheme=http``), which is kept on every path below it.
"""
from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import tempfile
from pathlib import Path

from .config import ConfigError
from .trial_dirs import filesystem

# The driver's files, copied to the bucket; the table's files are rewritten at every refresh.
TABLE_FILES = ("trials.parquet", "trials.csv", "summary.csv", "statuses.json", "experiment.json")
STUDY_FILE = "optuna.db"  # the default SQLite study (a copy made with SQLite's backup API)
COPY_KEY = "driver_copy_at"  # experiment.json: the local copy that Ray Tune's saved searcher names


def check_copy_in_place(exp_dir: Path, record: dict, phases: tuple[str, ...]) -> None:
    """A search continued from Ray Tune's state in a bucket needs the driver's copy where it was:
    Tune's pickled searcher opens the default Optuna study by that copy's absolute path."""
    at = record.get(COPY_KEY)
    from .optuna_storage import DEFAULT_RECORD

    if "search" not in phases or not at or Path(at) == exp_dir or record.get("optuna_storage") not in (
            None, DEFAULT_RECORD):
        return
    cache = Path(at).parents[2]
    raise ConfigError(f"experiment {exp_dir.name!r}: Ray Tune's saved search names its Optuna study at {at}/"
                      f"{STUDY_FILE}, and this machine keeps the experiment's files at {exp_dir}: run the command "
                      f"again with REGSTUDY_CACHE={cache} (the copy is then made there)")


SCHEMES = ("s3", "gs", "gcs", "hdfs", "abfs", "abfss")  # pyarrow's remote filesystems
_SECRETS = re.compile(r"((?:^|&)(?:access_key|secret_key|session_token|password)=)[^&]*")


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def check_scheme(uri: str, option: str = "--results-dir") -> None:
    scheme = uri.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(f"{option} {shown(uri)}: unknown scheme {scheme + '://'!r}; allowed: a directory, or "
                          f"{', '.join(s + '://BUCKET/PREFIX' for s in SCHEMES[:2])} (also "
                          f"{', '.join(s + '://' for s in SCHEMES[2:])})")


def join(uri: str, *parts: str) -> str:
    """``uri`` with ``parts`` appended to its path, its query (endpoint options) kept at the end."""
    base, sep, query = uri.partition("?")
    path = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts if p)])
    return f"{path}{sep}{query}"


def shown(uri: str) -> str:
    """The URI for messages and records: its query kept (an endpoint given there is needed to
    reach it again), any key or password in it as ``***``."""
    base, sep, query = uri.partition("?")
    return base + sep + _SECRETS.sub(r"\1***", query)


def _location(uri: str) -> str:
    return uri.partition("?")[0].rstrip("/")


def mirror_dir(uri: str, name: str) -> Path:
    """The local mirror of experiment ``name`` in the bucket ``uri``: the driver's working copy."""
    base = _location(uri).split("://", 1)[1].strip("/")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:80]
    digest = hashlib.sha1(_location(uri).encode()).hexdigest()[:8]  # (two URIs that sanitize alike)
    cache = Path(os.path.expanduser(os.environ.get("REGSTUDY_CACHE", "~/.cache/regstudy")))
    return cache / "buckets" / f"{safe}-{digest}" / name


def check_reachable(uri: str, option: str = "--results-dir") -> None:
    """Before anything starts: the bucket answers and the prefix can be listed (one line if not)."""
    import pyarrow.fs as pafs

    check_scheme(uri, option)
    try:
        fs, path = filesystem(uri)
        bucket = path.split("/", 1)[0]
        info = fs.get_file_info(bucket)
        if info.type == pafs.FileType.NotFound:
            raise ConfigError(f"{option} {shown(uri)}: no bucket {bucket!r} there (create it first)")
        fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow's errors (OSError, ArrowInvalid) say what failed
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{option} {shown(uri)}: cannot reach it: {first} (credentials and endpoint come "
                          "from the AWS_*/GOOGLE_* environment or the URI's query)") from None


def exists(uri: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def push(exp_dir: Path, exp_uri: str, *, study: bool = False) -> None:
    """Copy the driver's files from the mirror to the bucket (the study's only with ``study``)."""
    fs, base = filesystem(exp_uri)
    fs.create_dir(base, recursive=True)
    for name in TABLE_FILES:
        src = exp_dir / name
        if src.is_file():
            _upload(fs, src, f"{base}/{name}")
    db = exp_dir / STUDY_FILE
    if study and db.is_file():
        # A consistent copy of a database that may be open: SQLite's online backup, not the file
        with tempfile.TemporaryDirectory(dir=exp_dir) as tmp:
            copy = Path(tmp) / STUDY_FILE
            with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:
                src.backup(dst)
            _upload(fs, copy, f"{base}/{STUDY_FILE}")


def pull(exp_uri: str, exp_dir: Path) -> bool:
    """Copy the driver's files from the bucket into the mirror (what --resume reads), except where
    the mirror's copy is newer (this machine's driver was killed after its last copy to the
    bucket). False when the bucket holds no experiment there."""
    import pyarrow.fs as pafs

    fs, base = filesystem(exp_uri)
    exp_dir.mkdir(parents=True, exist_ok=True)
    names = (*TABLE_FILES, STUDY_FILE)
    infos = {i.path.rsplit("/", 1)[-1]: i for i in fs.get_file_info([f"{base}/{n}" for n in names])
             if i.type == pafs.FileType.File}
    for name, info in infos.items():
        local = exp_dir / name
        if local.is_file() and info.mtime_ns is not None and local.stat().st_mtime_ns > info.mtime_ns:
            continue
        with fs.open_input_stream(info.path) as f:
            data = f.read()
        tmp = exp_dir / f".{name}.pull"
        tmp.write_bytes(data)
        os.replace(tmp, local)
    return "experiment.json" in infos


def _upload(fs, src: Path, dest: str) -> None:
    with open(src, "rb") as f, fs.open_output_stream(dest) as out:
        while chunk := f.read(1 << 22):
            out.write(chunk)
