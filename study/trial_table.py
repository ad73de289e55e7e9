"""The trial table: every reported epoch of every trial, one row each, written atomically.

Rows come from each trial directory's ``result.json`` (one JSON line per report), so the table
can be rebuilt at any time (during the sweep, after a crash, after a resume); a retried or
restored trial reports some epochs twice and the latest report wins.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import regularizers, tasks, trial_dirs
from .config import FIELDS, make_config
from .metrics import NOT_RESULTS, OBJECTIVE, all_metrics

METRICS = all_metrics()
TRIAL_DIR_PREFIX = "trial_"  # study.sweep names trial directories trial_<trial id>


def trial_id_of(trial_dir: Path | str) -> str:
    name = Path(trial_dir).name
    return name[len(TRIAL_DIR_PREFIX):] if name.startswith(TRIAL_DIR_PREFIX) else name


def table_trial_id(phase: str, tune_trial_id: str) -> str:
    """The trial table's ``trial_id``: Tune's id, prefixed by the phase (ids repeat across phases)."""
    return f"{phase}-{tune_trial_id}"


def table_status(view: str | None, *, full: bool, diverged: bool, finished: bool = False) -> str:
    """A trial's status in the table (study.metrics.STATUSES), from Tune's view of it (``view``:
    "done", "errored", "interrupted", "running" or None: see :func:`collect`), whether it reached
    its epoch budget and whether it diverged. The one rule for the table and the live metrics."""
    if diverged:
        return "diverged"
    if view in ("errored", "interrupted", "running"):
        return view
    if view == "done":
        return "completed" if full else "stopped"  # (ASHA stopped it early)
    if finished:
        return "completed" if full else "errored"  # (finished phases have a status per trial)
    return "running"


def read_trial_rows(trial_dir: Path) -> list[dict[str, Any]]:
    path = Path(trial_dir) / trial_dirs.RESULT
    return trial_dirs.parse_result_lines(path.read_text()) if path.exists() else []


def trial_params(config: dict[str, Any]) -> dict[str, Any]:
    """The parameters a trial got from Tune: Optuna's suggestions (search) or, for a confirmation
    grid point ``{"params": {...}, "seed": S}``, the search trial's parameters plus the seed."""
    if isinstance(config.get("params"), dict) and "seed" in config:
        return {**config["params"], "seed": config["seed"]}
    return dict(config)


def upgrade_record(values: dict[str, Any]) -> dict[str, Any]:
    """Settings recorded before the regularizer catalog, in today's terms (the catalog's
    ``formerly``: POS ``augment`` is ``word_dropout``); other names are accepted as they were."""
    values = dict(values)
    task = str(values.get("task", "image"))
    reg = regularizers.upgrade(task, str(values.get("regularizer", "none")))
    # EfficientNet's stochastic depth was a plain setting beside any regularizer; it is a technique now
    if values.get("stochastic_depth") and "stochastic_depth" not in reg.split("+"):
        reg = "stochastic_depth" if reg == "none" else f"{reg}+stochastic_depth"
    if "regularizer" in values or reg != "none":
        values["regularizer"] = reg
    return values


def dataset_of(task: str, config: Any) -> str:
    """The ``dataset`` column of a row recorded before the table had one: the setting that names
    the task's data (``TaskSpec.dataset_key``: the image ``dataset``, the tagging ``corpus``) as
    the row's ``config`` JSON gives it, else that setting's default, the only data there was then
    (Tiny ImageNet; the treebank). "?" for a task this code does not know."""
    try:
        spec = tasks.get(str(task))
    except KeyError:
        return "?"
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            config = None
    value = config.get(spec.dataset_key) if isinstance(config, dict) else None
    if value is None or value != value:  # (absent, or NaN in a table read back)
        value = spec.defaults.get(spec.dataset_key, FIELDS[spec.dataset_key].default)
    return str(value)


def fill_dataset(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with its ``dataset`` column (right after ``task``) filled by :func:`dataset_of`
    where it is missing: the whole column in a table written before it existed, or the rows
    such a table left in a newer one."""
    if "task" not in table.columns:
        return table
    table = table.copy()
    if "dataset" not in table.columns:
        table.insert(table.columns.get_loc("task") + 1, "dataset", np.nan)
    missing = table["dataset"].isna() | (table["dataset"].astype(str) == "")
    if missing.any():
        config = table["config"] if "config" in table.columns else pd.Series(None, index=table.index)
        known: dict[tuple[str, Any], str] = {}  # (one JSON parse per trial, not per epoch)
        values = []
        for task, cfg in zip(table.loc[missing, "task"], config[missing]):
            key = (str(task), cfg if isinstance(cfg, str) else None)
            if key not in known:
                known[key] = dataset_of(*key)
            values.append(known[key])
        table["dataset"] = table["dataset"].astype(object)
        table.loc[missing, "dataset"] = values
    return table


def _nan(v: Any) -> Any:
    return float("nan") if v is None else v


def collect(experiment_dir: Path | str, *, experiment: str, phase: str, fixed: dict[str, Any],
            searched: list[str], statuses: dict[str, str] | None = None,
            finished: bool = False, reader: trial_dirs.TrialReader | None = None) -> pd.DataFrame:
    """Long table for one Ray experiment directory (e.g. ``results/NAME/ray/search``, or its URI
    in a bucket).

    ``statuses``: Tune's view per trial id: "done" (completed, or stopped by ASHA: told apart by
    its epochs), "errored" (failed after its retries), "running" (or pending), "interrupted"
    (the driver stopped before the trial ended); None when unknown (every trial then counts as
    running). A trial directory whose id Tune does not know is
    left out: a trial started by a driver that was killed before Tune's next snapshot, which
    the restored experiment does not contain (Tune starts a new trial in its place).
    ``finished``: the phase's ``fit()`` has returned. ``reader``: the reader of earlier refreshes
    (only trials with new files are read again); None reads every trial.
    """
    fs, base = trial_dirs.filesystem(experiment_dir)
    reader = reader or trial_dirs.TrialReader()
    records: list[dict[str, Any]] = []
    context = (json.dumps(fixed, sort_keys=True, default=str), tuple(searched))  # (memo key: the settings)
    for read in reader.read(fs, base):
        key = _trial_key(read, context, fixed)
        if key is None:
            continue
        tid, params, cfg, by_epoch = key
        if statuses is not None and tid not in statuses:
            continue
        status = table_status((statuses or {}).get(tid), full=max(by_epoch) >= cfg.epochs,
                              diverged=any(bool(r.get("diverged")) for r in by_epoch.values()), finished=finished)
        memo = ("rows", context, status, experiment, phase)
        if memo not in read.memo:
            read.memo = {k: v for k, v in read.memo.items() if k[0] != "rows"}  # (one status at a time)
            read.memo[memo] = _trial_rows(read, tid, params, cfg, by_epoch, status, experiment=experiment,
                                          phase=phase, searched=searched)
        records.extend(read.memo[memo])
    return pd.DataFrame.from_records(records)


def _trial_key(read: trial_dirs.TrialRead, context: tuple, fixed: dict[str, Any]) -> tuple | None:
    """(Tune's trial id, its parameters, its config, its rows by epoch) of a trial directory read,
    computed once per read; None for a directory with no epoch reported yet."""
    memo = ("key", context)
    if memo not in read.memo:
        history = read.history
        by_epoch: dict[int, dict] = {int(r["epoch"]): r for r in history.get("epochs", [])}
        for r in read.rows:
            by_epoch[int(r["epoch"])] = r  # latest report of an epoch wins
        if not by_epoch:
            read.memo[memo] = None
        else:
            if read.rows:
                tid, params = str(read.rows[-1]["trial_id"]), trial_params(read.rows[-1].get("config") or {})
            else:
                tid, params = trial_id_of(read.files.name), dict(history.get("params", {}))
            cfg = make_config(upgrade_record({**fixed, **params}))
            read.memo[memo] = (tid, params, cfg, by_epoch)
    return read.memo[memo]


def _trial_rows(read: trial_dirs.TrialRead, tid: str, params: dict[str, Any], cfg, by_epoch: dict[int, dict],
                status: str, *, experiment: str, phase: str, searched: list[str]) -> list[dict[str, Any]]:
    config_json = json.dumps(cfg.to_dict(), sort_keys=True)
    searched_json = json.dumps([s for s in searched if s != "regularizer"])
    rows = []
    for epoch in sorted(by_epoch):
        r = by_epoch[epoch]
        row = {"experiment": experiment, "phase": phase, "trial_id": table_trial_id(phase, tid), "task": cfg.task,
               "dataset": cfg.dataset_name, "model": cfg.model, "regularizer": cfg.regularizer,
               "seed": int(cfg.seed)}
        for name in searched:
            if name != "regularizer":
                row[name] = _nan(params.get(name))
        for name, value in cfg.strengths.items():  # every strength the trial used, searched or not
            row[name] = value
        row["max_epochs"] = int(cfg.epochs)
        row["epoch"] = int(epoch)
        for m in METRICS:
            row[m] = _nan(r.get(m))
        row["status"] = status
        row["failures"] = read.failures  # failed attempts (each retried from the last checkpoint)
        row["error"] = read.error if status == "errored" else ""
        row["config"] = config_json
        row["searched"] = searched_json
        rows.append(row)
    return rows


def atomic_write(df: pd.DataFrame, path: Path) -> None:
    """Write to a temp file beside ``path`` and rename: readers never see a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """One row per trial (in the order trials first appear): final-epoch metrics and the best
    (lowest val_loss, the earliest such epoch) epoch. Column-wise, not a loop over trials: it runs
    on every table refresh, and a sweep may hold thousands of trials."""
    if table.empty:
        return table
    id_cols = [c for c in table.columns if c not in METRICS and c not in ("epoch", "config", "learning_rate")]
    ordered = table.reset_index(drop=True).sort_values("epoch", kind="stable")
    trials = pd.unique(table["trial_id"])
    by_trial = ordered.groupby("trial_id", sort=False)
    last = by_trial.tail(1).drop_duplicates("trial_id", keep="last").set_index("trial_id").reindex(trials)
    out = last[[c for c in id_cols if c != "trial_id"]].copy()
    out.insert(id_cols.index("trial_id") if "trial_id" in id_cols else 0, "trial_id", trials)
    out["epochs_run"] = by_trial["epoch"].max().reindex(trials).astype(int).to_numpy()
    finals = {f"final_{m}": (last[m].to_numpy() if m in last.columns else np.full(len(trials), np.nan))
              for m in METRICS}
    out = pd.concat([out, pd.DataFrame(finals, index=out.index)], axis=1)
    objective = pd.to_numeric(ordered[OBJECTIVE], errors="coerce")
    finite = ordered[np.isfinite(objective.to_numpy(dtype=float))]
    if len(finite):
        best = finite.loc[finite.groupby("trial_id", sort=False)[OBJECTIVE].idxmin()].set_index("trial_id")
        best = best.reindex(trials)
        out["best_epoch"] = best["epoch"].to_numpy()
        for name in ("val_loss", "val_acc", "gap_loss", "gap_acc"):
            out[f"best_{name}"] = best[name].to_numpy() if name in best.columns else np.nan
        if not best["epoch"].isna().any():
            out["best_epoch"] = out["best_epoch"].astype(int)
    return out.reset_index(drop=True)


def status_counts(table: pd.DataFrame, phase: str = "search") -> dict[str, int]:
    """How many trials of a phase ended in each status."""
    trials = table[table["phase"] == phase].drop_duplicates("trial_id")
    return {str(k): int(v) for k, v in trials["status"].value_counts().items()}


def write_tables(table: pd.DataFrame, out_dir: Path) -> None:
    atomic_write(table, out_dir / "trials.parquet")
    atomic_write(table, out_dir / "trials.csv")
    atomic_write(summarize(table), out_dir / "summary.csv")


def read_table(out_dir: Path) -> pd.DataFrame | None:
    """The table as last written (trials.parquet, else its CSV twin); None when there is none
    that can be read."""
    for name, read in (("trials.parquet", pd.read_parquet), ("trials.csv", pd.read_csv)):
        try:
            return read(Path(out_dir) / name)
        except FileNotFoundError:
            continue
        except Exception:  # noqa: BLE001 - unreadable: the trial directories are the record left
            continue
    return None


DIR_MISSING = "trial_dir_missing"  # the column: rows kept from the table, the trial's results are gone


def keep_lost_trials(table: pd.DataFrame, previous: pd.DataFrame | None,
                     known: dict[str, set[str] | None]) -> pd.DataFrame:
    """The table is the record of the experiment: a refresh never drops a trial that it held
    because the trial's directory (``ray/<phase>/trial_<id>``: result.json, checkpoints) was
    deleted, emptied or lost. Its rows stay as they were, with ``trial_dir_missing`` true.

    ``known``: per phase, the trial ids Ray Tune knows (None: not known). A trial that Tune does
    not know is left out, as :func:`collect` does: it was started by a driver killed before
    Tune's next snapshot, and the resumed phase ran a new trial in its place.
    """
    table = table.copy()
    if not table.empty:
        table[DIR_MISSING] = False
    if previous is None or previous.empty or not {"phase", "trial_id"} <= set(previous.columns):
        return table
    previous = fill_dataset(previous)  # (a table written before the column: its kept rows get one too)
    have = set(zip(table["phase"], table["trial_id"])) if not table.empty else set()

    def lost(phase: str, trial_id: str) -> bool:
        ids = known.get(phase)
        return (phase, trial_id) not in have and (ids is None or trial_id.removeprefix(f"{phase}-") in ids)

    rows = previous[[lost(str(p), str(t)) for p, t in zip(previous["phase"], previous["trial_id"])]].copy()
    if rows.empty:
        return table
    rows[DIR_MISSING] = True
    columns = list(table.columns) + [c for c in rows.columns if c not in table.columns]
    return pd.concat([table, rows], ignore_index=True).reindex(columns=columns)


def best_per_regularizer(table: pd.DataFrame, k: int = 1, phase: str = "search") -> pd.DataFrame:
    """Top-k trials per regularizer type of one phase, ranked by the trial's best-epoch
    (lowest) validation loss -- the same number ASHA and TPE optimised, so the pick agrees with
    the search.

    Trials whose status is in ``study.metrics.NOT_RESULTS`` are excluded (errored, diverged, and
    unfinished: interrupted or still running); ASHA-stopped trials compete with the epochs
    they ran (a stopped trial rarely beats one that ran the full budget, but if it does its
    early minimum is still an honest validation number; the confirmation phase then re-runs it
    to the full budget). The test split plays no part in the choice. Returns rows of
    ``summarize`` plus the trial's ``config`` JSON, best first within each regularizer.
    """
    t = table[(table["phase"] == phase) & ~table["status"].isin(list(NOT_RESULTS))]
    if t.empty:
        return pd.DataFrame()
    s = summarize(t).dropna(subset=["best_val_loss"])
    if "config" in t.columns:
        s["config"] = s["trial_id"].map(t.groupby("trial_id")["config"].last())
    return (s.sort_values(["regularizer", "best_val_loss"]).groupby("regularizer", sort=True).head(k)
            .reset_index(drop=True))
