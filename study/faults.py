"""Fault injection for the reliability tests: the failures a long sweep meets, on demand.

``REGSTUDY_FAULT`` holds comma-separated specs ``<kind>_<scope>@<epoch>``, or ``@/path/file``
whose content is read at every check (so one Ray cluster can serve tests with different faults).

kinds (where in the epoch's report they strike):
  sigkill  the worker process SIGKILLs itself after training epoch N, before reporting it
           (a worker lost mid-epoch: the retry resumes from epoch N-1's checkpoint)
  oom      ``torch.OutOfMemoryError`` (what CUDA raises) before epoch N is reported
  enospc   ``OSError(ENOSPC)`` while epoch N's checkpoint is written
  raise    ``RuntimeError`` right after epoch N's checkpoint
  sleep@S  (no scope) every epoch's report takes S seconds longer: trials slow enough to be
           interrupted at a known point
  hold@N   (no scope) epoch N's report waits as long as the spec holds it (given in a spec
           file that the test rewrites; at most 10 minutes): a sweep that stays running while a
           test looks at it
scopes:
  once       every trial, on its first attempt only (a marker in the trial dir remembers it)
  one_trial  the first trial to get there, on every attempt (it must end errored)

Every injected fault is appended to ``<trial dir>/.faults`` so tests can count attempts.
"""
from __future__ import annotations

import errno
import os
import re
import signal
import time
from pathlib import Path

FAULT_ENV = "REGSTUDY_FAULT"
_SPEC = re.compile(r"^(sigkill|oom|enospc|raise)_(once|one_trial)@(\d+)$")
_SLEEP = re.compile(r"^sleep@(\d+(?:\.\d+)?)$")
_HOLD = re.compile(r"^hold@(\d+)$")
HOLD_MAX_S = 600.0


def _specs() -> list[tuple[str, str, float]]:
    raw = os.environ.get(FAULT_ENV, "").strip()
    if raw.startswith("@"):
        path = Path(raw[1:])
        raw = path.read_text().strip() if path.exists() else ""
    out = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        m, sleep, hold = _SPEC.match(part), _SLEEP.match(part), _HOLD.match(part)
        if sleep:
            out.append(("sleep", "", float(sleep.group(1))))
            continue
        if hold:
            out.append(("hold", "", int(hold.group(1))))
            continue
        if not m:
            raise ValueError(f"{FAULT_ENV}: bad spec {part!r}; expected <kind>_<once|one_trial>@<epoch>")
        out.append((m.group(1), m.group(2), int(m.group(3))))
    return out


def _claimed(trial_dir: Path, kind: str, scope: str) -> bool:
    """Whether this trial takes the fault now (see the scopes above)."""
    if scope == "once":
        marker = trial_dir / f".fault_{kind}"
        if marker.exists():
            return False
        marker.write_text("1")
        return True
    claim = trial_dir.parent / f".fault_{kind}_claim"  # shared by the experiment's trials
    try:
        fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, trial_dir.name.encode())
        os.close(fd)
        return True
    except FileExistsError:
        return claim.read_text() == trial_dir.name


def _hold(epoch: int) -> None:
    deadline = time.monotonic() + HOLD_MAX_S
    while ("hold", "", epoch) in _specs() and time.monotonic() < deadline:
        time.sleep(0.2)


def maybe_fail(where: str, trial_dir: str, epoch: int) -> None:
    """``where``: "before_report", "checkpoint_write" or "after_checkpoint"."""
    kinds = {"before_report": ("sigkill", "oom"), "checkpoint_write": ("enospc",),
             "after_checkpoint": ("raise",)}[where]
    for kind, scope, at in _specs():
        if kind == "sleep" and where == "before_report":
            time.sleep(at)
        if kind == "hold" and where == "before_report" and at == epoch:
            _hold(epoch)
        if kind not in kinds or at != epoch or not _claimed(Path(trial_dir), kind, scope):
            continue
        with open(Path(trial_dir) / ".faults", "a") as f:
            f.write(f"{kind}@{epoch}\n")
        if kind == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if kind == "oom":
            import torch
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (injected by {FAULT_ENV} at epoch {epoch})")
        if kind == "enospc":
            raise OSError(errno.ENOSPC, f"No space left on device (injected by {FAULT_ENV} at epoch {epoch})")
        raise RuntimeError(f"injected fault after epoch {epoch} ({FAULT_ENV})")
