"""Where an experiment lives, ``<results dir>/<name>/``, and its record, ``experiment.json``.

The one definition of the experiment directory: the driver (study.run), the sweep's settings
(also as Ray Tune pickled them) and the checks made before anything starts all use
:func:`experiment_dir`. An experiment name is one plain directory name, so that the directory
the driver checks, prints and records is the one the sweep writes to.
"""
from __future__ import annotations

import json
import os
import pickletools
import tempfile
from pathlib import Path
from typing import Any

from . import optuna_storage
from .cli import UsageError
from .config import ConfigError
from .preflight import output_dir

RECORD = "experiment.json"
TUNE_STATE = "tuner.pkl"  # Ray Tune's saved experiment in ray/<phase>/ (what Tuner.can_restore looks for)
_NAME_MAX = 255  # bytes in one directory name (Linux, macOS)


def check_name(name: str, option: str = "--name") -> str:
    """``name`` if it is one plain directory name; else ConfigError naming the option."""
    if (not name or name in (".", "..") or "/" in name or "\0" in name
            or (os.altsep is not None and os.altsep in name)):
        raise ConfigError(f"{option} {name!r}: an experiment name is one plain directory name (no '/', "
                          "not '.' or '..'); the experiment goes to --results-dir/NAME")
    if len(os.fsencode(name)) > _NAME_MAX:
        raise ConfigError(f"{option} {name[:40]!r}...: too long; allowed: up to {_NAME_MAX} bytes")
    return name


def experiment_dir(results_dir: str | os.PathLike, name: str) -> Path:
    """``<results dir>/<name>``, absolute: the results directory resolved (symlinks, ``..``), the
    experiment's own entry kept as it is named (it may be a symlink to where its files are)."""
    return Path(results_dir).resolve() / name


def check_location(results_dir: str | os.PathLike, exp_dir: Path) -> None:
    """Before anything starts: the experiment directory is, or can be made, a writable directory
    (not a file, not below a file, not on a read-only filesystem)."""
    try:
        output_dir(results_dir, "--results-dir")
        if os.path.lexists(exp_dir):
            output_dir(exp_dir, "experiment directory")
    except UsageError as e:
        raise ConfigError(str(e)) from None


def read_record(exp_dir: Path) -> dict[str, Any]:
    """The experiment's experiment.json; ConfigError naming the file when it is not a JSON object."""
    path = Path(exp_dir) / RECORD
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno} column {e.colno}: {e.msg}); it is the "
                          "record of the experiment: repair it or restore it from a backup") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; it is the record of the experiment: restore it "
                          "from a backup") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not the experiment's record") from None
    except PermissionError as e:
        raise ConfigError(f"{path}: cannot read it: {e.strerror}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object (the record of the experiment), got "
                          f"{type(doc).__name__}")
    return doc


def tune_state_at(record: dict[str, Any], phase: str) -> Path | None:
    """The experiment directory that Ray Tune's saved state of ``phase`` refers to: where it was
    created (``tune_state_at`` in experiment.json; records without it name their default Optuna
    storage by its absolute path, inside that directory). None when the record cannot tell."""
    at = record.get("tune_state_at")
    if isinstance(at, dict) and at.get(phase):
        return Path(at[phase])
    storage = str(record.get("optuna_storage") or "")
    path = Path(storage[len(optuna_storage.SQLITE):]) if storage.startswith(optuna_storage.SQLITE) else None
    if path is not None and path.is_absolute() and path.name == optuna_storage.DEFAULT_FILE:
        return path.parent
    return None


def check_in_place(exp_dir: Path, record: dict[str, Any], phases: tuple[str, ...]) -> None:
    """Refuse to continue a phase whose Ray Tune state was saved in another directory.

    Tune's pickles (``ray/<phase>/tuner.pkl``, the searcher's state) hold absolute paths: the
    Optuna searcher's database and the directory that new trials are created in. A moved or
    copied experiment restored from them would write into the original location (or into a
    recreated copy of that path). Only the saved state of a phase is bound to the place; the
    analysis and a confirmation phase that has not started yet work anywhere.
    """
    for phase in phases:
        if not (exp_dir / "ray" / phase / TUNE_STATE).exists():
            continue
        at = tune_state_at(record, phase)
        if at is None or _same_dir(at, exp_dir):
            continue
        raise ConfigError(
            f"experiment {exp_dir.name!r} was recorded at {at}, and Ray Tune's saved state "
            f"(ray/{phase}/{TUNE_STATE}) refers to that path: it cannot be continued from {exp_dir}. "
            f"Move it back to {at} (or make {at} a symlink to {exp_dir}) and run the command "
            "again; the analysis reads it where it is")


# Ray Tune's saved state in ray/<phase>/, newest file of each kind (ray.tune's CKPT_FILE_TMPL of
# TuneController, SearchGenerator, Searcher, BasicVariantGenerator and the callbacks); JSON or pickles
TUNE_STATE_FILES = (TUNE_STATE, "experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl",
                    "basic-variant-state-*.json", "callback-states-*.pkl")


def check_tune_state(exp_dir: Path, phases: tuple[str, ...]) -> None:
    """Refuse to continue from Ray Tune state that was written in part (a full disk: Tune copies
    its state files into the results directory in place). Tune would log the damage and start
    the phase over, sampling every trial again beside the ones that ran."""
    for phase in phases:
        d = exp_dir / "ray" / phase
        if not (d / TUNE_STATE).exists():
            continue
        newest = [sorted(d.glob(pattern))[-1] for pattern in TUNE_STATE_FILES if any(d.glob(pattern))]
        damaged = [p for p in newest if not _whole(p)]
        if not damaged:
            continue
        staged = _staged_copies(phase, [p.name for p in damaged])
        kinds = ", ".join(p.rsplit(".", 1)[0] for p in TUNE_STATE_FILES[1:])
        todo = (f"Ray Tune's own copies are whole in {staged}: copy its state files ({kinds}) into ray/{phase}/ "
                "and run the command again" if staged
                else "run the remaining trials as a new experiment (another --name)")
        raise ConfigError(
            f"experiment {exp_dir.name!r}: Ray Tune's saved state is damaged, cut short (was the disk full when "
            f"it was written?): {', '.join(f'{p.relative_to(exp_dir)} ({p.stat().st_size} bytes)' for p in damaged)}"
            f"; the {phase} phase cannot be continued as it is; its trials so far are in "
            f"{exp_dir / 'trials.parquet'} and ray/{phase}/. {todo}")


def _staged_copies(phase: str, names: list[str]) -> Path | None:
    """The directory where Ray Tune first wrote the state files ``names`` on this machine, all
    whole: its session directory, $RAY_TMPDIR/ray/session_*/artifacts/<time>/<phase>/driver_artifacts."""
    root = Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir()) / "ray"
    for d in sorted(root.glob(f"session_2*/artifacts/*/{phase}/driver_artifacts"), reverse=True):
        if all((d / n).is_file() and _whole(d / n) for n in names):
            return d
    return None


def _whole(path: Path) -> bool:
    """Whether a JSON or pickle file reads to its end (without running any of it)."""
    data = path.read_bytes()
    try:
        if data[:1] == b"\x80":  # a pickle (protocol 2+): walk its opcodes to STOP
            for _ in pickletools.genops(data):
                pass
        else:
            json.loads(data)
    except Exception:  # noqa: BLE001 - any decoding error: the file is cut short or garbled
        return False
    return bool(data)


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # (one of them does not exist)
        return a.resolve() == b.resolve()
