"""The Python API for notebooks and scripts: the commands' own code, called as functions.

    import study
    table = study.sweep("l2_dropout", data="tiny.zip", max_epochs=3, num_samples=4, name="try")
    table, record, studies = study.load("results/try")
    gaps = study.analyse("results/try")

``study.sweep`` runs ``python -m study.run`` (its ``main``, in this process) with the options as
keyword arguments, and returns the trial table; ``study.analyse`` runs what
``python -m analysis.summarize`` runs (``analysis.summarize.summarize``) and returns the gap table.
Nothing here re-implements a command: a new option of a command is an option here too.

(``study.sweep`` is also the module of the sweep's Ray Tune machinery, whose names Tune's saved
state refers to; that module is callable and calls :func:`sweep` here: see study/sweep.py.)
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

from .config import ConfigError


class SweepError(RuntimeError):
    """``study.sweep`` did not finish: ``code`` is the command's exit code (1 failed, 2 bad input)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Loaded(NamedTuple):
    table: Any  # pandas.DataFrame: the long trial table (one row per trial and epoch)
    record: dict  # experiment.json
    studies: dict  # study name -> optuna.Study (the experiment's, from its recorded storage)


def argv_of(space: str | os.PathLike | None, options: dict[str, Any]) -> list[str]:
    """The ``study.run`` command line of a call: ``max_epochs=3`` is ``--max-epochs 3``, a true
    flag (``resume=True``) is ``--resume``, ``set={"lr": 0.01}`` is ``--set lr=0.01``."""
    from .run import parser

    actions = {a.dest: a for a in parser()._actions
               if a.option_strings and a.dest not in ("help", "list_spaces", "list_regularizers", "space")}
    argv = [] if space is None else ["--space", os.fspath(space)]
    for key, value in options.items():
        action = actions.get(key)
        if action is None:
            allowed = sorted(actions)
            raise TypeError(f"study.sweep: unknown option {key!r}; options: {', '.join(allowed)}")
        flag = action.option_strings[-1]
        if action.nargs == 0:  # (store_true)
            argv += [flag] if value else []
        elif key == "set":
            items = value.items() if isinstance(value, dict) else (str(v).split("=", 1) for v in value)
            for k, v in items:
                argv += [flag, f"{k}={v}"]
        elif value is not None:
            argv += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return argv


class _Tee(io.TextIOBase):
    """The stream as it is, plus the last ``error:`` line written to it (for the exception)."""

    def __init__(self, stream):
        self.stream, self.error = stream, ""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.startswith("error: "):
                self.error = line[len("error: "):]
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


def sweep(space: str | os.PathLike | None = None, **options: Any):
    """Run a sweep as ``python -m study.run`` does and return its trial table (a DataFrame).

    ``space``: a space name or YAML path (None: the default, or the experiment's with ``resume``).
    ``options``: the command's options by their names (``name``, ``results_dir``, ``data``,
    ``max_epochs``, ``num_samples``, ``mlflow``, ``quiet``, ``resume``, ``set``, ...).
    Raises SweepError (exit code 1 or 2, with the command's message), KeyboardInterrupt if the
    sweep was interrupted (continue it with ``resume=True``)."""
    from .run import main

    argv = argv_of(space, options)
    tee = _Tee(sys.stderr)
    saved, sys.stderr = sys.stderr, tee
    try:
        code = main(argv)
    finally:
        sys.stderr = saved
    if code == 130:
        raise KeyboardInterrupt(f"the sweep was interrupted; continue it with resume=True ({tee.error})")
    if code != 0:
        raise SweepError(code, tee.error or f"python -m study.run exited with {code}")
    return load(experiment_path(space, options)).table


def experiment_path(space, options: dict[str, Any]) -> Path:
    """Where ``study.sweep(space, **options)`` writes its experiment."""
    from .experiment_dir import experiment_dir
    from .run import DEFAULT_SPACE
    from .results_location import is_uri, mirror_dir
    from .spaces import load_space

    name = options.get("name") or load_space(os.fspath(space or DEFAULT_SPACE)).name
    results = str(options.get("results_dir") or "results")
    if is_uri(results):  # (a bucket: the driver's copy of the experiment's files, on this machine)
        return mirror_dir(results, name)
    return experiment_dir(Path(results), name)


def load(path: str | os.PathLike) -> Loaded:
    """An experiment directory's trial table, experiment record and Optuna studies (the record's
    study, from its recorded storage; a storage with a password takes the URL from
    ``$REGSTUDY_OPTUNA_STORAGE``). Raises ConfigError for a directory that is not an experiment."""
    import optuna

    from analysis.loading import load_trials, study_storage

    from . import optuna_storage
    from .experiment_dir import RECORD, read_record

    d = Path(path).expanduser()
    if not (d / RECORD).is_file():
        raise ConfigError(f"{d}: no {RECORD} (not an experiment directory of study.run)")
    record = read_record(d)  # (ConfigError for a broken record, as documented)
    table = load_trials(d)
    url = study_storage(d, record)
    if url.startswith(optuna_storage.SQLITE) and not Path(url[len(optuna_storage.SQLITE):]).exists():
        return Loaded(table, record, {})  # (a grid searches nothing: opening would create the file)
    storage = optuna_storage.open_storage(url)
    names = set(optuna.get_all_study_names(storage))
    wanted = [record.get("optuna_study") or record.get("name") or d.name, *record.get("optuna_studies", [])]
    studies = {n: optuna.load_study(study_name=n, storage=storage) for n in dict.fromkeys(wanted) if n in names}
    return Loaded(table, record, studies)


def analyse(path: str | os.PathLike, **options: Any):
    """Write what ``python -m analysis.summarize PATH`` writes (``PATH/analysis/``: gaps.csv,
    table1.md, figures, ...) and return the gap table (gaps.csv as a DataFrame). ``options``:
    ``out``, ``test``, ``n_boot``, ``seed``, ``epoch``, ``figures`` of analysis.summarize.summarize."""
    from analysis.summarize import summarize

    return summarize(path, **options).gaps
