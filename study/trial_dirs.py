"""Reading Ray Tune's trial directories on any pyarrow filesystem: a local disk or a bucket.

What the trial table needs from a trial directory ``ray/<phase>/trial_<id>/``: ``result.json``
(one JSON line per report), the newest checkpoint's ``history.json`` (every epoch so far, also
those whose report Tune dropped) and ``error.txt`` (Tune's record of failed attempts).

One listing of the phase directory per refresh gives every file's size and modification time; a
:class:`TrialReader` reads a trial's files again only when one of those changed, so a refresh costs
the listing plus the trials with new results, not every trial's files (issue 14: the refresh time
stays flat as finished trials accumulate).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow.fs as pafs

# (pyarrow.fs is imported where it is used: the command's bad-input answers stay fast)

RESULT, HISTORY, ERROR = "result.json", "history.json", "error.txt"
CHECKPOINT_PREFIX = "checkpoint_"


def filesystem(location: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path on it) for a local path or a URI (``s3://bucket/prefix``, ``gs://...``)."""
    import pyarrow.fs as pafs

    text = str(location)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), str(Path(text).absolute())


@dataclass(frozen=True)
class TrialFiles:
    """A trial directory as one listing saw it: its name, path and the files the table reads."""
    name: str
    path: str
    result: tuple[int, int] | None = None  # (size, mtime in ns) of each file, None: absent
    history: tuple[str, int, int] | None = None  # (checkpoint dir, size, mtime) of the newest history.json
    error: tuple[int, int] | None = None
    checkpoints: tuple[str, ...] = ()  # checkpoint directory names, oldest first

    @property
    def signature(self) -> tuple:
        return (self.result, self.history, self.error)


def _stamp(info) -> tuple[int, int]:
    mtime = info.mtime_ns if info.mtime_ns is not None else -1
    return int(info.size or 0), int(mtime)


def list_trials(fs: pafs.FileSystem, base: str) -> list[TrialFiles]:
    """Every trial directory under ``base`` (one recursive listing), sorted by name; [] when
    ``base`` does not exist. A directory counts as a trial's whatever its name (Tune's own names
    when a driver did not give trial_dirname_creator)."""
    import pyarrow.fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return []
    base = base.rstrip("/")
    dirs: set[str] = set()
    files: dict[str, dict[str, pafs.FileInfo]] = {}
    for info in infos:
        rel = info.path[len(base) + 1:] if info.path.startswith(base + "/") else None
        if not rel:
            continue
        parts = rel.split("/")
        if len(parts) == 1:
            if info.type == pafs.FileType.Directory:
                dirs.add(parts[0])
            continue
        dirs.add(parts[0])  # (object stores list no directories, only keys below them)
        files.setdefault(parts[0], {})["/".join(parts[1:])] = info
    out = []
    for name in sorted(dirs):
        own = files.get(name, {})
        checkpoints = sorted({rel.split("/")[0] for rel in own
                              if rel.startswith(CHECKPOINT_PREFIX) and "/" in rel}
                             | {rel for rel, i in own.items()
                                if rel.startswith(CHECKPOINT_PREFIX) and i.type == pafs.FileType.Directory})
        history = None
        for ckpt in reversed(checkpoints):
            info = own.get(f"{ckpt}/{HISTORY}")
            if info is not None and info.type == pafs.FileType.File:
                history = (ckpt, *_stamp(info))
                break
        stamp = {key: _stamp(own[key]) for key in (RESULT, ERROR)
                 if key in own and own[key].type == pafs.FileType.File}
        out.append(TrialFiles(name=name, path=f"{base}/{name}", result=stamp.get(RESULT), history=history,
                              error=stamp.get(ERROR), checkpoints=tuple(checkpoints)))
    return out


def _read_text(fs: pafs.FileSystem, path: str) -> str | None:
    """The file's text; None when it cannot be read now (deleted since the listing, a network
    error): the reader then reads it again next time instead of remembering it as empty."""
    try:
        with fs.open_input_stream(path) as f:
            return f.read().decode("utf-8", errors="replace")
    except (FileNotFoundError, OSError):
        return None


def parse_result_lines(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now; the next refresh gets it
    return rows


def parse_failures(text: str) -> tuple[int, str]:
    """Tune's record of a trial's failures (``error.txt``, one entry per failed attempt): how
    many attempts failed and the last one's reason (the exception's final line)."""
    if not text:
        return 0, ""
    entries = re.split(r"^Failure # \d+ \(occurred at [^)]*\)\n", text, flags=re.M)[1:]
    last = [ln.strip() for ln in (entries[-1] if entries else text).splitlines() if ln.strip()]
    reason = last[-1] if last else ""
    if "actor died unexpectedly" in (entries[-1] if entries else text) or "ActorDiedError" in reason:
        reason = "the trial's worker process died (killed, or out of host memory)"
    return len(entries), reason[:500]


@dataclass
class TrialRead:
    """What one trial directory holds, parsed; ``memo`` keeps what the table derived from it."""
    files: TrialFiles
    rows: list[dict[str, Any]]  # result.json's reports that carry an epoch
    history: dict[str, Any]  # the newest checkpoint's history.json ({} if none)
    failures: int
    error: str
    complete: bool = True  # every listed file was read (else it is read again next time)
    memo: dict[Any, Any] = field(default_factory=dict)


def read_trial(fs: pafs.FileSystem, files: TrialFiles) -> TrialRead:
    def text(rel: str, listed) -> str | None:
        return _read_text(fs, f"{files.path}/{rel}") if listed else ""

    texts = {RESULT: text(RESULT, files.result), ERROR: text(ERROR, files.error),
             HISTORY: text(f"{files.history[0]}/{HISTORY}", True) if files.history else ""}
    history: dict[str, Any] = {}
    try:
        history = json.loads(texts[HISTORY] or "{}")
    except json.JSONDecodeError:
        history = {}
    failures, error = parse_failures(texts[ERROR] or "")
    rows = [r for r in parse_result_lines(texts[RESULT] or "") if "epoch" in r]
    return TrialRead(files=files, rows=rows, history=history, failures=failures, error=error,
                     complete=all(t is not None for t in texts.values()))


class TrialReader:
    """Reads a phase's trial directories, again only those whose files changed since its last
    call. Keep one per phase directory for the life of a driver (study.sweep does)."""

    def __init__(self) -> None:
        self._known: dict[str, TrialRead] = {}
        self.read_last = 0  # trial directories read by the last call (the rest came from memory)

    def read(self, fs: pafs.FileSystem, base: str) -> list[TrialRead]:
        out, self.read_last = [], 0
        listed = list_trials(fs, base)
        for files in listed:
            known = self._known.get(files.path)
            if known is None or known.files.signature != files.signature or not known.complete:
                known = read_trial(fs, files)
                self._known[files.path] = known
                self.read_last += 1
            else:
                known.files = files
            out.append(known)
        gone = set(self._known) - {f.path for f in listed}
        for path in gone:
            del self._known[path]
        return out
