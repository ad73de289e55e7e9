"""One driver per experiment: ``<experiment dir>/driver.lock``, held for the driver's life.

The lock is ``flock(LOCK_EX)`` on that file, which the kernel drops when the holding process
ends however it ends (exit, SIGKILL, OOM killer, reboot): a driver that died leaves the file but
not the lock, and the next driver takes over without anyone cleaning up (the Ray processes a
driver starts do not inherit the descriptor: Python opens it close-on-exec, so a cluster that
outlives its killed driver does not keep the lock). The file records the
holder (pid, host, start time, command) for the message a second driver prints.

Across hosts (a shared filesystem), the file's host tells that the previous holder ran
elsewhere, where this host cannot see whether it still runs (NFS drops a dead client's locks
only after its lease; a mount with ``local_lock=flock`` or ``nolock`` never shares them): taking
over such a lock needs ``--break-lock``, which also breaks a lock another host still holds, by
replacing the file (the old holder keeps a lock on a file nobody opens any more).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCK_FILE = "driver.lock"


class LockError(RuntimeError):
    """Another driver holds the experiment, or may: the message says who and what to do."""


@dataclass
class Holder:
    pid: int
    host: str
    start_time: str
    command: str

    @classmethod
    def read(cls, text: str) -> "Holder | None":
        try:
            d = json.loads(text)
            return cls(int(d["pid"]), str(d["host"]), str(d["start_time"]), str(d["command"]))
        except (ValueError, KeyError, TypeError):
            return None  # empty (a driver that died before writing it) or not ours

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {self.start_time} ({self.command})"


@dataclass
class ExperimentLock:
    path: Path
    fd: int
    previous: Holder | None = None  # the holder that died (or whose lock was broken)
    broken: bool = False  # --break-lock overrode a lock that a live driver may still hold
    created: list[Path] = field(default_factory=list)  # directories made for the lock

    def release(self) -> None:
        """Remove the lock file (only if it is still ours: --break-lock may have replaced it),
        then the directories made for it if nothing else was written in them."""
        if self.fd < 0:
            return
        try:
            if _same_file(self.fd, self.path):
                self.path.unlink()
        finally:
            os.close(self.fd)
            self.fd = -1
        for d in reversed(self.created):
            try:
                d.rmdir()
            except OSError:
                break  # not empty: the experiment was started

    def __enter__(self) -> "ExperimentLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def note(self) -> str | None:
        """One line to print about the lock taken over, if any."""
        if self.previous is None:
            return None
        if self.broken:
            return (f"warning: --break-lock: took the experiment from {self.previous.describe()}; if that "
                    "driver still runs, stop it: two drivers would write the same trials")
        return f"note: the previous driver ({self.previous.describe()}) ended without releasing the lock; taken over"


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fs = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fs.st_dev, fs.st_ino)


def _flock(fd: int, tries: int = 5) -> bool:
    """Take the exclusive lock without waiting for a holder; a few quick retries ride out the
    moments in which it is held only briefly (a driver releasing it, a reader's :func:`holder`)."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise
        if attempt + 1 < tries:
            time.sleep(0.05)
    return False


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _makedirs(d: Path) -> list[Path]:
    missing = []
    for p in (d, *d.parents):
        if p.exists():
            break
        missing.append(p)
    d.mkdir(parents=True, exist_ok=True)  # (mode from the umask, as everything the driver writes)
    return list(reversed(missing))


def _held_message(exp_dir: Path, holder: Holder | None, here: str) -> str:
    who = holder.describe() if holder else "another driver (it has not recorded itself yet)"
    if holder is None or holder.host == here:
        todo = (f"wait for it to finish, or stop it (kill {holder.pid}, or Ctrl-C in its terminal) and "
                "continue the experiment with --resume" if holder else "wait for it, or stop it")
    else:
        todo = (f"wait for it to finish or stop it there; if host {holder.host} is down and its lock "
                "stayed behind, run this command with --break-lock")
    return f"experiment {exp_dir.name!r} is in use by another driver: {who}; {todo}"


def acquire(exp_dir: Path, command: str, break_lock: bool = False) -> ExperimentLock:
    """Take the experiment for this process, or raise LockError naming the holder.

    Creates ``exp_dir`` (and missing parents, removed again by ``release`` if left empty).
    """
    exp_dir = Path(exp_dir)
    here = socket.gethostname()
    created = _makedirs(exp_dir)
    path = exp_dir / LOCK_FILE
    broken = None
    try:
        for _ in range(100):  # (a loop only while other drivers release or replace the file)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            if not _flock(fd):
                holder = Holder.read(_read(fd))
                if break_lock and holder is not None and holder.host != here and _same_file(fd, path):
                    path.unlink()  # the live lock stays on the old file, which nobody opens again
                    os.close(fd)
                    broken = holder
                    continue
                os.close(fd)
                raise LockError(_held_message(exp_dir, holder, here)) from None
            if not _same_file(fd, path):  # the holder released (removed the file) meanwhile
                os.close(fd)
                continue
            previous = broken or Holder.read(_read(fd))
            if previous is not None and previous.host != here and not break_lock:
                os.close(fd)
                raise LockError(
                    f"experiment {exp_dir.name!r} was last run by {previous.describe()}, and this host "
                    f"({here}) cannot tell whether that driver still runs; if it does not, run this command "
                    "with --break-lock")
            me = {"pid": os.getpid(), "host": here, "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "command": command}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(me) + "\n").encode())
            os.fsync(fd)
            return ExperimentLock(path, fd, previous, broken is not None or (
                previous is not None and previous.host != here), created)
        raise LockError(f"experiment {exp_dir.name!r}: {path} keeps changing; is another driver starting?")
    except BaseException:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                break
        raise


def holder(exp_dir: Path) -> Holder | None:
    """Who holds the experiment now (None: nobody), without taking it: for read-only users."""
    path = Path(exp_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return Holder.read(_read(fd))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
