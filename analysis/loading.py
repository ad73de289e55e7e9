"""Read one experiment directory: ``trials.parquet`` (or ``trials.csv``), ``experiment.json``, ``optuna.db``."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.metrics import all_metrics
from study.regularizers import canonical, upgrade
from study.trial_table import fill_dataset

log = logging.getLogger(__name__)

METRICS = tuple(m for m in all_metrics() if m != "diverged")
ID_COLUMNS = ("experiment", "phase", "trial_id", "task", "dataset", "model", "regularizer", "status")
REQUIRED = ("trial_id", "regularizer", "epoch", "train_loss", "train_clean_loss", "val_loss")


class ResultsError(ValueError):
    """A results directory or one of its files cannot be used; the message names the file."""


def resolve_results_dir(path: str | os.PathLike) -> Path:
    """``results/<name>`` or a path to its ``trials.parquet`` / ``trials.csv`` -> the directory."""
    p = Path(path)
    if p.is_file():
        return p.parent
    if not p.exists():
        raise FileNotFoundError(f"no such results directory: {p}")
    return p


def load_trials(path: str | os.PathLike) -> pd.DataFrame:
    """The trial table (one row per trial and epoch), types normalised.

    ``path`` is the experiment directory or the table file itself. Parquet is preferred, the
    CSV twin is the fallback. Missing optional columns are added (``phase`` = "search",
    ``seed`` = 0, ``task``/``model`` = "?", ``status`` = "completed", metrics = NaN; ``dataset``,
    which tables written before it lack, by ``study.trial_table.dataset_of``);
    ``gap_loss`` / ``gap_acc`` are recomputed where missing.
    """
    p = Path(path)
    if p.is_dir():
        for name in ("trials.parquet", "trials.csv"):
            if (p / name).exists():
                p = p / name
                break
        else:
            raise FileNotFoundError(f"{path}: no trials.parquet or trials.csv")
    try:
        df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        # (pyarrow's ArrowInvalid is a ValueError: a truncated or foreign file)
        raise ResultsError(f"{p}: cannot read the trial table: {' '.join(str(e).split())[:300]}") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ResultsError(f"{p}: trial table lacks required columns {missing}")
    if df.empty:
        raise ResultsError(f"{p}: the trial table has no rows (no trial has reported an epoch yet)")
    try:
        return normalise(df)
    except (TypeError, ValueError) as e:
        raise ResultsError(f"{p}: unusable trial table: {' '.join(str(e).split())[:300]}") from None


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Fill optional columns and fix dtypes of a trial table (also used on hand-built tables)."""
    df = df.copy()
    defaults: dict[str, Any] = {"experiment": "?", "phase": "search", "task": "?", "model": "?",
                                "status": "completed", "seed": 0}
    for col, val in defaults.items():
        if col not in df.columns:
            df[col] = val
    df = fill_dataset(df)
    for col in ID_COLUMNS:
        df[col] = df[col].astype(str)
    # one name per combination, in today's terms: tables recorded before the catalog say e.g.
    # "l2_dropout", and "augment" for the POS word dropout
    pairs = df[["task", "regularizer"]].drop_duplicates().itertuples(index=False)
    names = {(t, r): canonical(upgrade(t, r)) for t, r in pairs}
    df["regularizer"] = [names[k] for k in zip(df["task"], df["regularizer"])]
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").fillna(0).astype(int)
    df["epoch"] = pd.to_numeric(df["epoch"]).astype(int)
    if "max_epochs" not in df.columns:
        df["max_epochs"] = df.groupby("trial_id")["epoch"].transform("max")
    df["max_epochs"] = pd.to_numeric(df["max_epochs"]).astype(int)
    for col in METRICS:
        if col not in df.columns:
            df[col] = np.nan
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    if df["gap_loss"].isna().all():
        df["gap_loss"] = df["val_loss"] - df["train_clean_loss"]
    if df["gap_acc"].isna().all():
        df["gap_acc"] = df["train_clean_acc"] - df["val_acc"]
    return df.sort_values(["phase", "trial_id", "epoch"], kind="stable").reset_index(drop=True)


def searched_params(df: pd.DataFrame) -> list[str]:
    """Union of the ``searched`` JSON lists (in first-seen order), restricted to existing numeric columns."""
    names: list[str] = []
    if "searched" in df.columns:
        for raw in df["searched"].dropna().unique():
            try:
                vals = json.loads(raw) if isinstance(raw, str) else list(raw)
            except (TypeError, ValueError):
                continue
            for v in vals:
                if v not in names:
                    names.append(v)
    return [n for n in names if n in df.columns and pd.api.types.is_numeric_dtype(df[n])
            and df[n].notna().any()]


def load_experiment(path: str | os.PathLike) -> dict[str, Any]:
    """``experiment.json`` of an experiment directory ({} with a logged warning when absent)."""
    f = resolve_results_dir(path) / "experiment.json"
    if not f.exists():
        log.warning("%s not found: setup section of the report will be thin", f)
        return {}
    try:
        doc = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise ResultsError(f"{f}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{f}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(doc, dict):
        raise ResultsError(f"{f}: expected a JSON object, found {type(doc).__name__}")
    return doc


def study_storage(path: str | os.PathLike, experiment: dict[str, Any] | None = None) -> str:
    """The storage URL that the experiment's Optuna study is read from: the recorded one (the
    default: this directory's optuna.db, also where an older record names it by the absolute
    path it had before the directory was moved or copied). Show it with study.redact.redact."""
    from study import optuna_storage

    d = resolve_results_dir(path)
    exp = experiment if experiment is not None else load_experiment(d)
    return optuna_storage.for_reading(exp.get("optuna_storage"), d)


def load_study(path: str | os.PathLike, experiment: dict[str, Any] | None = None):
    """The Optuna study of an experiment, or ``None`` (with the reason logged) when unavailable.

    Study name and storage come from experiment.json keys ``optuna_study`` / ``optuna_storage``
    when present; otherwise the experiment name (``name`` key, else the directory name) and
    ``sqlite:///<dir>/optuna.db``. A storage recorded with its password as ``***`` (a database
    server) is opened with the URL in ``$REGSTUDY_OPTUNA_STORAGE``.
    """
    from study import optuna_storage
    from study.redact import redact

    d = resolve_results_dir(path)
    exp = experiment if experiment is not None else load_experiment(d)
    try:
        url = study_storage(d, exp)
    except ValueError as e:  # (ConfigError) the password is not known here
        log.warning("could not load the Optuna study: %s", e)
        return None
    if url.startswith(optuna_storage.SQLITE) and not Path(url[len(optuna_storage.SQLITE):]).exists():
        log.info("no Optuna database %s", url[len(optuna_storage.SQLITE):])
        return None
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna_storage.open_storage(url)
        techniques = (exp.get("search") or {}).get("techniques") if isinstance(exp.get("search"), dict) else None
        if exp.get("optuna_studies") and techniques and len(techniques) == len(exp["optuna_studies"]):
            return _comparison_study(storage, dict(zip(techniques, exp["optuna_studies"])))
        name = exp.get("optuna_study") or exp.get("name") or exp.get("experiment")
        if not name:
            names = optuna.get_all_study_names(storage=storage)
            name = names[0] if len(names) == 1 else d.name
        return optuna.load_study(study_name=name, storage=storage)
    except Exception as e:  # noqa: BLE001 - a missing/corrupt study must never stop the analysis
        log.warning("could not load the Optuna study from %s: %s", redact(url), redact(str(e)))
        return None


def _comparison_study(storage, studies: dict[str, str]):
    """A comparison's studies (one per technique, study.comparison) as one in-memory study whose
    trials carry their technique as the ``regularizer`` parameter, as a search over techniques
    records it: the importances then read both alike."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    choice = CategoricalDistribution(list(studies))
    merged = None
    for technique, name in studies.items():
        study = optuna.load_study(study_name=name, storage=storage)
        merged = merged or optuna.create_study(directions=study.directions, study_name=", ".join(studies.values()))
        for t in study.get_trials(deepcopy=True):
            if t.state.is_finished():
                t.params = {"regularizer": technique, **t.params}
                t.distributions = {"regularizer": choice, **t.distributions}
                merged.add_trial(t)
    return merged


# --- the experiment's state --------------------------------------------------------------------
@dataclass(frozen=True)
class ExperimentState:
    """Whether the experiment's numbers are final: ``state`` is "finished", "interrupted" or
    "running"; ``detail`` says why in one line (and how to continue)."""
    state: str
    detail: str
    unfinished: int = 0  # trials with status interrupted or running

    def line(self) -> str:
        return f"{self.state}: {self.detail}" if self.detail else self.state


def experiment_state(path: str | os.PathLike, trials: pd.DataFrame,
                     experiment: dict[str, Any] | None = None) -> ExperimentState:
    """From what the driver leaves: its lock (``driver.lock``, held while a driver runs), the
    trial statuses (``interrupted``; ``running`` without a driver: it was killed), and
    ``experiment.json`` (``end_time`` is written when a command completes, ``commands`` records
    each command's start)."""
    from study import experiment_lock

    d = resolve_results_dir(path)
    last = trials.sort_values("epoch").drop_duplicates(["phase", "trial_id"], keep="last") if len(trials) else trials
    open_ = last[last["status"].isin(["interrupted", "running"])] if len(last) else last
    n = len(open_)
    by_phase = ", ".join(f"{int(k)} {ph}" for ph, k in open_.groupby("phase", sort=False).size().items())
    trials_note = f"{n} trial{'s' if n != 1 else ''} unfinished ({by_phase})" if n else "no trial unfinished"
    holder = experiment_lock.holder(d)
    if holder is not None:
        return ExperimentState("running", f"a driver is running it now ({holder.describe()}); "
                                          f"{trials_note}; these numbers are not final", n)
    exp = experiment or {}
    commands = exp.get("commands") or []
    last_start = str(commands[-1].get("time", "")) if commands and isinstance(commands[-1], dict) else ""
    end = str(exp.get("end_time") or "")
    unended = bool(commands) and (not end or (last_start and last_start > end))
    if n or unended:
        why = trials_note if n else "its last command did not complete"
        planned = (exp.get("search") or {}).get("num_samples") if isinstance(exp.get("search"), dict) else None
        n_search = last[last["phase"] == "search"]["trial_id"].nunique() if len(last) else 0
        if isinstance(planned, int) and n_search < planned:
            why += f"; {planned - n_search} of {planned} planned search trials not started"
        return ExperimentState("interrupted", f"{why}; unfinished trials are not results; continue with: "
                                              f"python -m study.run --name {d.name} --results-dir {d.parent} "
                                              "--resume", n)
    return ExperimentState("finished", "", 0)
