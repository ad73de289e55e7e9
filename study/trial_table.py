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

import pandas as pd

from .config import make_config

METRICS = ("train_loss", "train_acc", "train_clean_loss", "train_clean_acc", "val_loss", "val_acc",
           "gap_loss", "gap_acc", "learning_rate", "l2_term", "epoch_time_s", "samples_per_s",
           "test_loss", "test_acc", "test_loss_oov", "test_acc_oov")


def read_trial_rows(trial_dir: Path) -> list[dict[str, Any]]:
    path = trial_dir / "result.json"
    rows = []
    if not path.exists():
        return rows
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now; the next refresh gets it
    return rows


def read_checkpoint_history(trial_dir: Path) -> dict[str, Any]:
    """The metric history saved in the trial's latest checkpoint (see study.trainable)."""
    ckpts = sorted(trial_dir.glob("checkpoint_*/history.json"))
    if not ckpts:
        return {}
    try:
        return json.loads(ckpts[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def collect(experiment_dir: Path, *, experiment: str, phase: str, fixed: dict[str, Any],
            searched: list[str], statuses: dict[str, str] | None = None) -> pd.DataFrame:
    """Long table for one Ray experiment directory (e.g. ``results/NAME/ray/search``)."""
    records = []
    for trial_dir in sorted(p for p in Path(experiment_dir).iterdir() if p.is_dir()):
        rows = read_trial_rows(trial_dir)
        history = read_checkpoint_history(trial_dir)
        by_epoch: dict[int, dict] = {int(r["epoch"]): r for r in history.get("epochs", [])}
        for r in rows:
            if "epoch" in r:
                by_epoch[int(r["epoch"])] = r  # latest report of an epoch wins
        if not by_epoch or not (rows or history):
            continue
        last = rows[-1] if rows else {"trial_id": trial_dir.name.split("_")[-2] if "_" in trial_dir.name
                                      else trial_dir.name, "config": history.get("params", {})}
        params = last.get("config") or history.get("params", {})
        params = params.get("full_config", params)  # confirmation trials carry the whole config
        cfg = make_config({**fixed, **params})
        trial_id = f"{phase}-{last['trial_id']}"
        status = (statuses or {}).get(last["trial_id"])
        if any(r.get("diverged") for r in by_epoch.values()):
            status = "diverged"
        elif status is None:
            status = "running"
        elif status == "done":
            status = "completed" if max(by_epoch) >= cfg.epochs else "stopped"
        for epoch in sorted(by_epoch):
            r = by_epoch[epoch]
            row = {"experiment": experiment, "phase": phase, "trial_id": trial_id, "task": cfg.task,
                   "model": cfg.model, "regularizer": cfg.regularizer, "seed": cfg.seed}
            for name in searched:
                if name == "regularizer":
                    continue
                row[name] = params.get(name, float("nan"))
            row["max_epochs"] = cfg.epochs
            row["epoch"] = epoch
            for m in METRICS:
                row[m] = r.get(m, float("nan"))
            row["status"] = status
            row["config"] = json.dumps(cfg.to_dict(), sort_keys=True)
            row["searched"] = json.dumps([s for s in searched if s != "regularizer"])
            records.append(row)
    return pd.DataFrame.from_records(records)


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
    """One row per trial: final-epoch metrics and the best (lowest val_loss) epoch."""
    if table.empty:
        return table
    out = []
    id_cols = [c for c in table.columns if c not in METRICS and c not in ("epoch", "config", "learning_rate")]
    for _, g in table.sort_values("epoch").groupby("trial_id", sort=False):
        last = g.iloc[-1]
        row = {c: last[c] for c in id_cols}
        row["epochs_run"] = int(g["epoch"].max())
        for m in METRICS:
            row[f"final_{m}"] = last[m]
        finite = g[g["val_loss"].notna()]
        if len(finite):
            best = finite.loc[finite["val_loss"].idxmin()]
            row.update(best_epoch=int(best["epoch"]), best_val_loss=best["val_loss"], best_val_acc=best["val_acc"],
                       best_gap_loss=best["gap_loss"], best_gap_acc=best["gap_acc"])
        out.append(row)
    return pd.DataFrame(out)


def write_tables(table: pd.DataFrame, out_dir: Path) -> None:
    atomic_write(table, out_dir / "trials.parquet")
    atomic_write(table, out_dir / "trials.csv")
    atomic_write(summarize(table), out_dir / "summary.csv")


def best_per_regularizer(table: pd.DataFrame, k: int = 1, phase: str = "search") -> pd.DataFrame:
    """Top-k trials per regularizer type by their best-epoch validation loss.

    Trials that errored or diverged are excluded; ASHA-stopped trials count with the epochs they
    ran (their best val loss is an honest, if early, estimate). Returns rows of ``summarize``
    with the trial's ``config`` JSON, best first within each regularizer.
    """
    t = table[(table["phase"] == phase) & ~table["status"].isin(["errored", "diverged"])]
    if t.empty:
        return pd.DataFrame()
    s = summarize(t).dropna(subset=["best_val_loss"])
    configs = t.groupby("trial_id")["config"].last()
    s["config"] = s["trial_id"].map(configs)
    return (s.sort_values(["regularizer", "best_val_loss"]).groupby("regularizer", sort=True).head(k)
            .reset_index(drop=True))
