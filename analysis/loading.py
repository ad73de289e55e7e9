"""Read one experiment directory: ``trials.parquet`` (or ``trials.csv``), ``experiment.json``, ``optuna.db``."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from study.metrics import all_metrics
from study.regularizers import canonical, upgrade

log = logging.getLogger(__name__)

METRICS = tuple(m for m in all_metrics() if m != "diverged")
ID_COLUMNS = ("experiment", "phase", "trial_id", "task", "model", "regularizer", "status")
REQUIRED = ("trial_id", "regularizer", "epoch", "train_loss", "train_clean_loss", "val_loss")


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
    ``seed`` = 0, ``task``/``model`` = "?", ``status`` = "completed", metrics = NaN);
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
    df = pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{p}: trial table lacks required columns {missing}")
    return normalise(df)


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Fill optional columns and fix dtypes of a trial table (also used on hand-built tables)."""
    df = df.copy()
    defaults: dict[str, Any] = {"experiment": "?", "phase": "search", "task": "?", "model": "?",
                                "status": "completed", "seed": 0}
    for col, val in defaults.items():
        if col not in df.columns:
            df[col] = val
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
    with open(f) as fh:
        return json.load(fh)


def load_study(path: str | os.PathLike, experiment: dict[str, Any] | None = None):
    """The Optuna study of an experiment, or ``None`` (with the reason logged) when unavailable.

    Study name and storage come from experiment.json keys ``optuna_study`` / ``optuna_storage``
    when present; otherwise the experiment name (``name`` key, else the directory name) and
    ``sqlite:///<dir>/optuna.db``.
    """
    d = resolve_results_dir(path)
    exp = experiment if experiment is not None else load_experiment(d)
    storage = exp.get("optuna_storage")
    if not storage:
        db = d / "optuna.db"
        if not db.exists():
            log.info("no optuna.db in %s", d)
            return None
        storage = f"sqlite:///{db}"
    elif storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_absolute():
        rel = Path(storage[len("sqlite:///"):])
        if not rel.exists() and (d / rel.name).exists():  # a relative path written from elsewhere
            storage = f"sqlite:///{d / rel.name}"
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        name = exp.get("optuna_study") or exp.get("name") or exp.get("experiment")
        if not name:
            names = optuna.get_all_study_names(storage=storage)
            name = names[0] if len(names) == 1 else d.name
        return optuna.load_study(study_name=name, storage=storage)
    except Exception as e:  # noqa: BLE001 - a missing/corrupt study must never stop the analysis
        log.warning("could not load the Optuna study from %s: %s", storage, e)
        return None
