"""Budget curves: the expected best validation loss of a technique's search as a function of the
number of search trials, n = 1..N (expected maximum performance, Dodge et al. 2019, "Show Your
Work: Improved Reporting of Experimental Results", here for a loss: the expected minimum).

For a technique whose N search trials reached best-epoch validation losses v_(1) <= ... <= v_(N),
the best of n trials drawn from them with replacement is v_(i) with probability
((N-i+1)/N)^n - ((N-i)/N)^n, which gives its mean and standard deviation (the spread column).
Each trial counts with the lowest validation loss it reached at any epoch, as the search saw it
(ASHA-stopped trials with the epochs they ran). Diverged trials have no finite loss: they are
left out of the curve and counted in ``diverged_trials`` (a technique that often diverges looks
better here than its search was; the budget table shows them); errored, interrupted and running
trials are left out too (no result). A curve that stays below another at
every n ranks its technique better whatever the tuning budget; where curves cross, the ranking
depends on how many trials a researcher can afford.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from study.metrics import NOT_RESULTS
from study.trial_table import summarize

from .groups import GROUP_KEYS, title

COLUMNS = (*GROUP_KEYS, "regularizer", "trials", "expected_best_val_loss", "sd_best_val_loss", "search_trials",
           "diverged_trials")


def expected_best(values: Sequence[float], n_max: int | None = None) -> pd.DataFrame:
    """(trials, expected_best_val_loss, sd_best_val_loss) for n = 1..n_max (default: len(values))
    of the minimum of n draws with replacement from the finite ``values``."""
    v = np.sort(np.asarray(values, float))
    v = v[np.isfinite(v)]
    size = len(v)
    if size == 0:
        return pd.DataFrame(columns=["trials", "expected_best_val_loss", "sd_best_val_loss"])
    above = (size - np.arange(size)) / size  # P(one draw >= v_(i)), i = 1..N
    rows = []
    for n in range(1, (n_max or size) + 1):
        p = above ** n - np.append(above[1:], 0.0) ** n  # P(min of n draws == v_(i))
        mean = float((p * v).sum())
        rows.append((n, mean, math.sqrt(max(float((p * v * v).sum()) - mean * mean, 0.0))))
    return pd.DataFrame(rows, columns=["trials", "expected_best_val_loss", "sd_best_val_loss"])


def trial_values(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per search trial that has a result: its group, regularizer, best val_loss (NaN for a
    diverged trial) and whether it diverged."""
    search = trials[(trials["phase"] == "search") & ~trials["status"].isin([s for s in NOT_RESULTS
                                                                              if s != "diverged"])]
    if search.empty:
        return pd.DataFrame(columns=[*GROUP_KEYS, "regularizer", "best_val_loss", "diverged"])
    per = summarize(search)
    if "best_val_loss" not in per.columns:
        per["best_val_loss"] = np.nan
    per["diverged"] = per["status"] == "diverged"
    per.loc[per["diverged"], "best_val_loss"] = np.nan
    return per[[*GROUP_KEYS, "regularizer", "best_val_loss", "diverged"]]


def budget_curves(trials: pd.DataFrame) -> pd.DataFrame:
    """The curve of every (task, dataset, model, regularizer) of the trial table's search phase."""
    values = trial_values(trials)
    frames = []
    for key, g in values.groupby([*GROUP_KEYS, "regularizer"], sort=True):
        curve = expected_best(g["best_val_loss"].to_numpy())
        for col, value in zip([*GROUP_KEYS, "regularizer"], key):
            curve[col] = value
        curve["search_trials"] = len(g)
        curve["diverged_trials"] = int(g["diverged"].sum())
        frames.append(curve)
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def _ranking(g: pd.DataFrame, n: int) -> list[str]:
    at = g[g["trials"] == n].sort_values(["expected_best_val_loss", "regularizer"])
    return at["regularizer"].tolist()


def ranking_statement(curves: pd.DataFrame) -> str:
    """Whether the ranking of techniques by expected best validation loss is the same at every
    budget up to the smallest technique's trial count, or where it changes; one sentence per
    task/dataset/model group."""
    out = []
    for key, g in curves.groupby(GROUP_KEYS, sort=False):
        regs = g["regularizer"].unique()
        if len(regs) < 2:
            continue
        n_common = int(g.groupby("regularizer")["trials"].max().min())
        first, last = _ranking(g, 1), _ranking(g, n_common)
        changes = [n for n in range(2, n_common + 1) if _ranking(g, n) != _ranking(g, n - 1)]
        where = f"{title(key)}: " if curves[GROUP_KEYS].drop_duplicates().shape[0] > 1 else ""
        if not changes:
            out.append(f"{where}the ranking by expected best validation loss is the same at every budget from 1 to "
                       f"{n_common} search trials: {' < '.join(first)}.")
        else:
            out.append(f"{where}the ranking by expected best validation loss changes with the budget: "
                       f"{' < '.join(first)} with 1 search trial, {' < '.join(last)} with {n_common} "
                       f"(changes at n = {', '.join(map(str, changes))}).")
    return " ".join(out) if out else "Fewer than two techniques with search results: no ranking to compare."
