"""Trial table -> per-seed final/best-epoch metrics -> gap summary with CIs and tests vs ``none``;
the study's Table 1 analogue; the per-regularizer budget accounting.

Which runs are summarised (:func:`select_rows`), per (task, dataset, model, regularizer) (the
groups: :mod:`analysis.groups`):

* the confirmation phase (``phase == "confirm"``, ``status == "completed"``): one run per seed;
* otherwise the best search trial of that regularizer (n = 1: the CI and the test are NaN, and
  the ``source`` / ``note`` columns say so and a warning is emitted).
"""
from __future__ import annotations

import json
import logging
import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

from study.metrics import EPOCH_METRICS, NOT_RESULTS, OBJECTIVE, STATUSES, TEST_METRICS
from study.regularizers import label as technique_label
from study.regularizers import canonical, order_key, seed_table1, upgrade
from study.trial_table import best_per_regularizer

from . import stats
from .groups import GROUP_KEYS, in_group, rows_of, shows_paper, title

log = logging.getLogger(__name__)

GROUP = [*GROUP_KEYS, "regularizer"]
# Metrics compared with `none` in the report's conclusion, and the direction that is "better".
LOWER_IS_BETTER = {"final_val_loss": True, "final_gap_loss": True, "final_gap_acc": True,
                   "final_test_loss": True, "final_test_acc": False, "final_val_acc": False,
                   "best_val_loss": True}
SOURCE_CONFIRM = "confirm"
SOURCE_SEARCH = "search-best"
SOURCE_NONE = "no result"  # no finished trial: the technique is listed, with no numbers
NOTE_SEARCH = "no completed confirm-phase runs: best search trial only (n=1), no CI or test"


class AnalysisWarning(UserWarning):
    """A caveat about the numbers (e.g. fallback to a single search trial)."""


def reg_sort_key(reg: str) -> tuple:
    """Report order, from the catalog: none, single techniques, then combinations."""
    return order_key(reg)


def _order(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df
    rank = {r: i for i, r in enumerate(sorted(df["regularizer"].unique(), key=reg_sort_key))}
    key = df["regularizer"].map(rank)
    return (df.assign(_k=key).sort_values([*GROUP_KEYS, "_k"], kind="stable")
            .drop(columns="_k").reset_index(drop=True))


# ----------------------------------------------------------------------------------- selection
def _best_search_trials(search: pd.DataFrame) -> list[str]:
    """trial_ids of the best search trial per regularizer: ``study.trial_table.best_per_regularizer``,
    the one definition of "best" (the sweep's confirmation phase picks with it too)."""
    ids = []
    for _, g in search.groupby(GROUP_KEYS, sort=False):
        best = best_per_regularizer(g)
        if not best.empty:
            ids += [str(t) for t in best["trial_id"]]
    return ids


def select_rows(df: pd.DataFrame, *, warn: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows, sources): the epoch rows of the runs to summarise, and one row per
    (task, dataset, model, regularizer) with ``source`` ("confirm" | "search-best" | "no result":
    no trial that can be a result, see ``study.metrics.NOT_RESULTS``), ``n_seeds``, ``note``."""
    confirm = df[(df["phase"] == "confirm") & (df["status"] == "completed")]
    search = df[df["phase"] == "search"]
    parts, info = [], []
    groups = sorted({tuple(k) for k in df[GROUP].drop_duplicates().itertuples(index=False)},
                    key=lambda k: (*k[:-1], reg_sort_key(k[-1])))
    need_search = []
    for key in groups:
        c = rows_of(confirm, key, GROUP)
        if not c.empty:
            parts.append(c)
            info.append({**dict(zip(GROUP, key)), "source": SOURCE_CONFIRM, "n_seeds": c["trial_id"].nunique(),
                         "note": ""})
        else:
            need_search.append(key)
    if need_search:
        mask = np.zeros(len(search), bool)
        for key in need_search:
            mask |= in_group(search, key, GROUP)
        sub = search[mask]
        best = set(_best_search_trials(sub)) if not sub.empty else set()
        chosen = sub[sub["trial_id"].isin(best)]
        parts.append(chosen)
        fallback, nothing = [], []
        for key in need_search:
            reg = key[-1]
            n = rows_of(chosen, key, GROUP)["trial_id"].nunique()
            if n:
                fallback.append(reg)
                info.append({**dict(zip(GROUP, key)), "source": SOURCE_SEARCH, "n_seeds": n, "note": NOTE_SEARCH})
                continue
            mine = rows_of(df, key, GROUP)
            note = f"no finished trial ({_status_list(mine)}): no result"
            nothing.append(f"{reg} ({_status_list(mine)})")
            info.append({**dict(zip(GROUP, key)), "source": SOURCE_NONE, "n_seeds": 0, "note": note})
        if warn and fallback:
            warnings.warn(f"no completed confirm-phase runs for: {', '.join(fallback)}; summarising the best "
                          f"search trial of each (n=1, CI and p-value are NaN)", AnalysisWarning, stacklevel=2)
        if warn and nothing:
            warnings.warn(f"no finished trial, so no result, for: {'; '.join(nothing)}", AnalysisWarning,
                          stacklevel=2)
    rows = pd.concat(parts, ignore_index=True) if parts else df.iloc[:0]
    return rows, _order(pd.DataFrame(info, columns=[*GROUP, "source", "n_seeds", "note"]))


def _status_list(trials: pd.DataFrame) -> str:
    """"1 interrupted, 2 errored": how many of these trials ended in each status that is no result."""
    last = trials.sort_values("epoch").drop_duplicates(["phase", "trial_id"], keep="last")
    counts = last["status"].value_counts()
    parts = [f"{int(counts[s])} {s}" for s in NOT_RESULTS if s in counts]
    return ", ".join(parts) or "no trial"


def _no_result_rows(sources: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Rows for the techniques without a result, so that tables list them as such."""
    if sources is None or sources.empty:
        return []
    none = sources[sources["source"] == SOURCE_NONE]
    return [{**{k: r[k] for k in GROUP}, "technique": technique_label(r["regularizer"]), "n_seeds": 0,
             "source": SOURCE_NONE, "note": r["note"]} for _, r in none.iterrows()]


# ------------------------------------------------------------------------------ per-seed values
def per_seed_metrics(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per run (trial): ``final_<metric>`` at its last epoch, ``best_<metric>`` at the
    epoch of lowest val_loss (``best_epoch``), and the test metrics (final epoch only)."""
    out = []
    for tid, g in rows.sort_values("epoch").groupby("trial_id", sort=False):
        g = g.reset_index(drop=True)
        last = g.iloc[-1]
        rec: dict[str, Any] = {c: last[c] for c in (*GROUP, "phase", "status", "seed")}
        rec.update(trial_id=tid, max_epochs=int(last["max_epochs"]), last_epoch=int(last["epoch"]))
        for m in EPOCH_METRICS:
            rec[f"final_{m}"] = float(last[m])
        for m in TEST_METRICS:
            vals = g[m].dropna() if m in g.columns else pd.Series(dtype=float)
            rec[f"final_{m}"] = float(vals.iloc[-1]) if len(vals) else math.nan
        v = g[OBJECTIVE].to_numpy(float)
        if np.isfinite(v).any():
            b = g.iloc[int(np.nanargmin(v))]
            rec["best_epoch"] = int(b["epoch"])
            for m in EPOCH_METRICS:
                rec[f"best_{m}"] = float(b[m])
        else:
            rec["best_epoch"] = math.nan
            for m in EPOCH_METRICS:
                rec[f"best_{m}"] = math.nan
        out.append(rec)
    ps = pd.DataFrame(out)
    if ps.empty:
        return ps
    # drop optional metrics that are absent everywhere (e.g. test_*_oov on the image task)
    empty = [c for c in ps.columns if c.startswith("final_test") and ps[c].isna().all() and c.endswith("_oov")]
    ps = ps.drop(columns=empty).sort_values(["seed", "trial_id"], kind="stable")
    return _order(ps)


def metric_columns(ps: pd.DataFrame) -> list[str]:
    return [c for c in ps.columns if c.startswith(("final_", "best_"))]


# -------------------------------------------------------------------------------- gap summary
def paired_by_seed(runs: pd.DataFrame, base: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The values of ``metric`` of ``runs`` and ``base`` aligned by seed (seeds that both have
    exactly once); empty arrays when a seed repeats on either side (pairing would be arbitrary)."""
    if runs["seed"].duplicated().any() or base["seed"].duplicated().any():
        return np.array([]), np.array([])
    both = runs[["seed", metric]].merge(base[["seed", metric]], on="seed", suffixes=("_x", "_y"))
    return both[f"{metric}_x"].to_numpy(float), both[f"{metric}_y"].to_numpy(float)


AUTO = "auto"  # the analysis' default --test: chosen from the design (design_test)


def design_test(ps: pd.DataFrame, baseline: str = "none") -> tuple[str, str]:
    """(test, why): the paired t-test when the runs are paired by design -- every technique's runs
    have the same seeds as the baseline's, at least two, each once (the confirmation phase and a
    grid give every configuration the same seeds) -- else Welch's t-test."""
    if ps.empty:
        return "welch", "no confirmation runs to pair"
    unpaired = []
    for key, g in ps.groupby(GROUP_KEYS, sort=False):
        base = g[g["regularizer"] == baseline]
        seeds = sorted(base["seed"])
        if len(seeds) < 2 or len(set(seeds)) != len(seeds):
            return "welch", f"{title(key)}: the baseline has {len(seeds)} run(s) with distinct seeds; no pairs"
        for reg, r in g.groupby("regularizer", sort=False):
            if sorted(r["seed"]) != seeds:
                unpaired.append(f"{technique_label(reg)} (seeds {', '.join(map(str, sorted(r['seed'])))})")
    if unpaired:
        return "welch", ("not every technique ran the baseline's seeds: " + "; ".join(unpaired)
                         + "; unpaired Welch t-tests")
    return "paired", "every technique ran the same seeds as the baseline: paired by seed"


def gap_summary_long(ps: pd.DataFrame, sources: pd.DataFrame | None = None, *, test: str = "welch",
                     baseline: str = "none", n_boot: int = stats.N_BOOT, alpha: float = stats.ALPHA,
                     seed: int = 0) -> pd.DataFrame:
    """Tidy summary: one row per (task, dataset, model, regularizer, metric) with mean, bootstrap
    CI, SD, n, and the difference to ``baseline`` (bootstrap CI, p-value, Holm-adjusted p-value
    across the regularizers of that group and metric). ``test``: a name of ``stats.TESTS``:
    "welch" or "permutation" compare the two groups of runs; "paired" (t-test) and "wilcoxon"
    (signed-rank) compare runs that share a seed (the confirmation phase gives every
    configuration the same seeds), with a paired bootstrap CI of the mean difference; ``n_pairs``
    says how many pairs there were (a seed that is missing, or repeated, on either side pairs
    nothing: then no test)."""
    if test not in stats.TESTS:
        raise ValueError(f"test must be one of {', '.join(stats.TESTS)}, not {test!r}")
    if ps.empty:
        return pd.DataFrame()
    paired = stats.TESTS[test][1]
    pfun = {"welch": stats.welch_pvalue, "paired": stats.paired_t_pvalue, "wilcoxon": stats.wilcoxon_pvalue,
            "permutation": lambda a, b: stats.permutation_pvalue(a, b, seed=seed)}[test]
    recs = []
    for key, g in ps.groupby(GROUP_KEYS, sort=False):
        base = g[g["regularizer"] == baseline]
        for reg, r in g.groupby("regularizer", sort=False):
            src = {}
            if sources is not None and not sources.empty:
                s = rows_of(sources, (*key, reg), GROUP)
                if not s.empty:
                    src = {"source": s["source"].iloc[0], "note": s["note"].iloc[0]}
            for m in metric_columns(ps):
                x = r[m].to_numpy(float)
                mean, lo, hi = stats.bootstrap_ci(x, n_boot=n_boot, alpha=alpha, seed=seed)
                fin = x[np.isfinite(x)]
                rec = {**dict(zip(GROUP, (*key, reg))), "metric": m, "n": int(fin.size),
                       "mean": mean, "ci_lo": lo, "ci_hi": hi,
                       "sd": float(np.std(fin, ddof=1)) if fin.size > 1 else math.nan,
                       "source": src.get("source", ""), "note": src.get("note", "")}
                if reg != baseline and not base.empty and paired:
                    xs, ys = paired_by_seed(r, base, m)
                    d, dlo, dhi = stats.paired_diff_ci(xs, ys, n_boot=n_boot, alpha=alpha, seed=seed)
                    rec.update(diff_none=d, diff_ci_lo=dlo, diff_ci_hi=dhi, p_value=pfun(xs, ys),
                               n_pairs=int(np.isfinite(xs - ys).sum()))
                elif reg != baseline and not base.empty:
                    y = base[m].to_numpy(float)
                    d, dlo, dhi = stats.diff_ci(x, y, n_boot=n_boot, alpha=alpha, seed=seed)
                    rec.update(diff_none=d, diff_ci_lo=dlo, diff_ci_hi=dhi, p_value=pfun(x, y))
                else:
                    rec.update(diff_none=math.nan, diff_ci_lo=math.nan, diff_ci_hi=math.nan, p_value=math.nan)
                rec["test"] = test
                recs.append(rec)
    long = pd.DataFrame(recs)
    if long.empty:
        return long
    long["p_holm"] = np.nan
    for _, idx in long.groupby([*GROUP_KEYS, "metric"], sort=False).groups.items():
        long.loc[idx, "p_holm"] = stats.holm(long.loc[idx, "p_value"].to_numpy())
    return long


def gap_summary(ps: pd.DataFrame, sources: pd.DataFrame | None = None, *, long: pd.DataFrame | None = None,
                **kw) -> pd.DataFrame:
    """Wide summary (``gaps.csv``): one row per (task, dataset, model, regularizer) with ``n_seeds``,
    ``source``, ``note`` and, per metric M, ``M_mean, M_ci_lo, M_ci_hi, M_sd, M_diff_none,
    M_diff_ci_lo, M_diff_ci_hi, M_p, M_p_holm``."""
    if long is None:
        long = gap_summary_long(ps, sources, **kw)
    rows = _no_result_rows(sources)
    if long.empty:
        return _order(pd.DataFrame(rows))
    for key, g in long.groupby(GROUP, sort=False):
        rec = dict(zip(GROUP, key))
        rec["technique"] = technique_label(key[-1])
        rec["n_seeds"] = int(g["n"].max())
        rec["source"] = g["source"].iloc[0]
        rec["note"] = g["note"].iloc[0]
        rec["test"] = g["test"].iloc[0]
        for _, r in g.iterrows():
            m = r["metric"]
            rec[f"{m}_mean"], rec[f"{m}_ci_lo"], rec[f"{m}_ci_hi"], rec[f"{m}_sd"] = r["mean"], r["ci_lo"], r["ci_hi"], r["sd"]
            rec[f"{m}_diff_none"], rec[f"{m}_diff_ci_lo"], rec[f"{m}_diff_ci_hi"] = r["diff_none"], r["diff_ci_lo"], r["diff_ci_hi"]
            rec[f"{m}_p"], rec[f"{m}_p_holm"] = r["p_value"], r["p_holm"]
        rows.append(rec)
    return _order(pd.DataFrame(rows))


# ------------------------------------------------------------------------------------ Table 1
def table1_epoch(max_epochs: int, epoch: int = 25) -> int:
    """The epoch Table 1 reports: the study's 25, or the budget when shorter."""
    return int(min(epoch, max_epochs))


def table1(rows: pd.DataFrame, sources: pd.DataFrame | None = None, *, epoch: int = 25,
           n_boot: int = stats.N_BOOT, seed: int = 0) -> pd.DataFrame:
    """The study's Table 1 (training and validation loss at epoch 25 per technique), at epoch
    ``min(epoch, max_epochs)`` of each run, mean and bootstrap CI over seeds; also the clean
    training loss, the loss gap, and -- for the original report's setting only (see
    ``analysis.groups.shows_paper``; NaN elsewhere) -- its numbers for comparison."""
    recs = []
    for key, g in rows.groupby(GROUP, sort=False):
        vals: dict[str, list[float]] = {k: [] for k in ("train_loss", "train_clean_loss", "val_loss", "gap_loss")}
        epochs = set()
        for _, t in g.groupby("trial_id", sort=False):
            e = table1_epoch(int(t["max_epochs"].iloc[0]), epoch)
            epochs.add(e)
            at = t[t["epoch"] == e]
            for k in vals:
                vals[k].append(float(at[k].iloc[0]) if not at.empty else math.nan)
        reg = key[-1]
        rec: dict[str, Any] = {**dict(zip(GROUP, key)), "technique": technique_label(reg),
                               "epoch": min(epochs) if len(epochs) == 1 else ",".join(map(str, sorted(epochs))),
                               "n_seeds": int(np.isfinite(vals["val_loss"]).sum())}
        for k, v in vals.items():
            rec[f"{k}_mean"], rec[f"{k}_ci_lo"], rec[f"{k}_ci_hi"] = stats.bootstrap_ci(v, n_boot=n_boot, seed=seed)
        rec["paper_train_loss"], rec["paper_val_loss"] = _paper(key)
        if sources is not None and not sources.empty:
            s = rows_of(sources, key, GROUP)
            rec["source"] = s["source"].iloc[0] if not s.empty else ""
        recs.append(rec)
    for r in _no_result_rows(sources):
        pt, pv = _paper(tuple(r[k] for k in GROUP))
        recs.append({**{k: r[k] for k in (*GROUP, "technique", "n_seeds", "source")},
                     "epoch": "", "paper_train_loss": pt, "paper_val_loss": pv,
                     **{f"{k}_{s}": math.nan for k in ("train_loss", "train_clean_loss", "val_loss", "gap_loss")
                        for s in ("mean", "ci_lo", "ci_hi")}})
    return _order(pd.DataFrame(recs))


def _paper(key: tuple) -> tuple[float, float]:
    """The original report's (train, val) loss for a (task, dataset, model, regularizer): only
    in its own setting, and only for the techniques it had; NaN otherwise."""
    return (seed_table1(key[-1]) if shows_paper(key) else None) or (math.nan, math.nan)


def fmt_ci(mean: float, lo: float, hi: float, digits: int = 3) -> str:
    """"1.234 [1.200, 1.270]"; just the mean when the CI is NaN; "–" when the mean is NaN."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "–"
    return "<0.001" if p < 1e-3 else f"{p:.3f}"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no dependency on ``tabulate``)."""
    cols = [str(c) for c in df.columns]
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(esc(v) for v in row) + " |")
    return "\n".join(lines)


def table1_frame(t1: pd.DataFrame, *, digits: int = 3, paper: bool | None = None,
                 gaps: pd.DataFrame | None = None, test: str | None = None) -> pd.DataFrame:
    """Table 1 formatted for display (one block per group; call per block). The original
    report's column only for its own setting (``paper`` None: decided from the block). With the
    wide gap summary (``gaps``, the test's name in ``test``): the final-epoch validation loss'
    difference to none, its CI and p-value, beside each technique."""
    if paper is None:
        paper = bool(len(t1)) and all(shows_paper(k) for k in t1[GROUP_KEYS].itertuples(index=False))
    out = pd.DataFrame({
        "Regularization": t1["technique"],
        "Training loss (as trained)": [fmt_ci(*r, digits) for r in t1[["train_loss_mean", "train_loss_ci_lo", "train_loss_ci_hi"]].to_numpy()],
        "Training loss (clean)": [fmt_ci(*r, digits) for r in t1[["train_clean_loss_mean", "train_clean_loss_ci_lo", "train_clean_loss_ci_hi"]].to_numpy()],
        "Val loss": [fmt_ci(*r, digits) for r in t1[["val_loss_mean", "val_loss_ci_lo", "val_loss_ci_hi"]].to_numpy()],
        "Loss gap (val − clean train)": [fmt_ci(*r, digits) for r in t1[["gap_loss_mean", "gap_loss_ci_lo", "gap_loss_ci_hi"]].to_numpy()],
        "n seeds": t1["n_seeds"].astype(int),
    })
    if paper:
        out["Paper train / val loss"] = [f"{a:.4g} / {b:.4g}" if np.isfinite(a) else "–"
                                         for a, b in t1[["paper_train_loss", "paper_val_loss"]].to_numpy()]
    if gaps is not None and not gaps.empty and "final_val_loss_diff_none" in gaps.columns:
        g = t1[GROUP].merge(gaps, on=GROUP, how="left")
        m = "final_val_loss"
        out[f"Δ val loss vs none (final epoch){f', {test}' if test else ''}"] = [
            "–" if not np.isfinite(d) else f"{fmt_ci(d, lo, hi, digits)}, {('p ' + fmt_p(p)) if np.isfinite(p) else 'no test'}"
            for d, lo, hi, p in g[[f"{m}_diff_none", f"{m}_diff_ci_lo", f"{m}_diff_ci_hi", f"{m}_p"]].to_numpy(float)]
    return out


def table1_heading(t1_block: pd.DataFrame, epoch: int = 25) -> str:
    """"loss at epoch 8 (= min(25, max_epochs); the study used epoch 25)" for one group's block
    (``epoch``: the epoch asked for; the study is named only in its own setting)."""
    eps = sorted({str(e) for e in t1_block["epoch"] if str(e) not in ("", "nan")})
    paper = bool(len(t1_block)) and shows_paper(tuple(t1_block[GROUP_KEYS].iloc[0]))
    return (f"loss at epoch {', '.join(eps) or '–'} (= min({epoch}, max_epochs)"
            + ("; the study used epoch 25)" if paper else ")"))


def table1_markdown(t1: pd.DataFrame, *, digits: int = 3, heading_level: int = 3, epoch: int = 25,
                    gaps: pd.DataFrame | None = None, test: str | None = None) -> str:
    """Markdown of Table 1, one block per (task, dataset, model), the reported epoch in each header
    (with ``gaps``: the difference to none and its test, see :func:`table1_frame`)."""
    if t1.empty:
        return "(Table 1: no trials)\n"
    blocks = []
    for key, g in t1.groupby(GROUP_KEYS, sort=False):
        blocks.append(
            f"{'#' * heading_level} Table 1 analogue — {title(key)}: {table1_heading(g, epoch)}\n\n"
            + markdown_table(table1_frame(g, digits=digits, gaps=gaps, test=test))
            + "\n\nCross-entropy in nats; mean [95% bootstrap CI] over seeds. \"As trained\" = the "
            "training-batch loss with dropout/augmentation active (data term only, the L2 penalty is "
            "logged separately); \"clean\" = eval mode on a fixed training sample.")
    return "\n\n".join(blocks) + "\n"


# ------------------------------------------------------------------------------------- budget
def budget_table(df: pd.DataFrame, experiment: dict[str, Any] | None = None) -> pd.DataFrame:
    """Per (task, dataset, model, regularizer): search trials by status, epochs and training seconds spent,
    the planned budget from experiment.json (``budget_per_regularizer``), and confirm-phase runs.
    ASHA's accounting: ``full_budget_epochs`` (the search trials x their epoch budget: what they
    would have trained without early stopping) and ``epochs_fraction`` (search_epochs of it)."""
    experiment = experiment or {}
    planned = experiment.get("budget_per_regularizer") or {}
    if isinstance(planned, dict):  # (records made before the catalog use e.g. "l2_dropout", POS "augment")
        task = str((experiment.get("fixed") or {}).get("task", "image"))
        planned = {canonical(upgrade(task, str(k))): v for k, v in planned.items()}
    trials = (df.sort_values("epoch").groupby("trial_id", sort=False)
              .agg(**{k: (k, "last") for k in GROUP}, phase=("phase", "last"), status=("status", "last"),
                   epochs=("epoch", "max"), seed=("seed", "last"), time_s=("epoch_time_s", "sum"),
                   max_epochs=("max_epochs", "last")).reset_index())
    recs = []
    for key, g in trials.groupby(GROUP, sort=False):
        reg = key[-1]
        s = g[g["phase"] == "search"]
        c = g[g["phase"] == "confirm"]
        rec = {**dict(zip(GROUP, key)), "search_trials": len(s)}
        for st in STATUSES + tuple(sorted(set(s["status"]) - set(STATUSES))):  # (unknown ones too)
            rec[st] = int((s["status"] == st).sum())
        p = planned.get(reg) if isinstance(planned, dict) else planned
        rec["planned"] = int(p) if isinstance(p, (int, float)) and not isinstance(p, bool) else np.nan
        full = int(pd.to_numeric(s["max_epochs"], errors="coerce").fillna(0).sum())
        rec.update(search_epochs=int(s["epochs"].sum()), full_budget_epochs=full,
                   epochs_fraction=int(s["epochs"].sum()) / full if full else np.nan,
                   search_time_s=float(s["time_s"].sum()),
                   confirm_runs=len(c), confirm_completed=int((c["status"] == "completed").sum()),
                   confirm_seeds=",".join(str(x) for x in sorted(c["seed"].unique())))
        recs.append(rec)
    for reg, p in (planned.items() if isinstance(planned, dict) else []):  # planned but never ran
        if reg not in {r["regularizer"] for r in recs}:
            recs.append({**{k: "" for k in GROUP_KEYS}, "regularizer": reg, "search_trials": 0, "planned": p})
    out = _order(pd.DataFrame(recs))
    counts = [c for c in out.columns if c not in (*GROUP, "planned", "confirm_seeds", "epochs_fraction")]
    return out.fillna({**{c: 0 for c in counts}, "search_time_s": 0.0, "confirm_seeds": ""})


def budget_statement(bt: pd.DataFrame) -> str:
    """"Each regularizer type got the same budget (N search trials, ...)" or the per-type counts;
    mismatches with the planned budget from experiment.json are called out. One statement per
    task/dataset/model group where the table has several (the planned budget, one per experiment,
    is then compared with each group's trials)."""
    if bt.empty:
        return "No trials."
    ran = bt[(bt[GROUP_KEYS] != "").any(axis=1)]  # (not the rows of types planned that never ran)
    groups = list(ran.groupby(GROUP_KEYS, sort=False))
    if len(groups) > 1:
        return " ".join(f"{title(key)}: {_budget_statement(g)}" for key, g in groups)
    return _budget_statement(bt)


def _budget_statement(bt: pd.DataFrame) -> str:
    counts = {r: int(n) for r, n in bt.groupby("regularizer", sort=False)["search_trials"].sum().items()}
    if not any(counts.values()) and "confirm_runs" in bt.columns:  # (a grid: fixed configurations)
        runs = {r: int(n) for r, n in bt.groupby("regularizer", sort=False)["confirm_runs"].sum().items()}
        if len(set(runs.values())) == 1:
            return (f"No search (fixed configurations): each of the {len(runs)} techniques ran "
                    f"{next(iter(runs.values()))} runs at the full epoch budget.")
        return "No search (fixed configurations); runs per technique: " + ", ".join(
            f"{r}: {n}" for r, n in runs.items()) + "."
    epochs = {r: int(n) for r, n in bt.groupby("regularizer", sort=False)["search_epochs"].sum().items()}
    vals = set(counts.values())
    if len(vals) == 1:
        n = vals.pop()
        msg = (f"Each regularizer type got the same budget: {n} search trial{'s' if n != 1 else ''} "
               f"per type ({len(counts)} types).")
    else:
        msg = "Regularizer types got different budgets — search trials per type: " + ", ".join(
            f"{r}: {n}" for r, n in counts.items()) + "."
    msg += (" ASHA early stopping made the epochs actually trained differ: " + ", ".join(
        f"{r}: {n}" for r, n in epochs.items()) + " epochs.") if len(set(epochs.values())) > 1 else ""
    planned = bt.dropna(subset=["planned"]) if "planned" in bt.columns else bt.iloc[:0]
    off = [f"{r['regularizer']} ran {int(r['search_trials'])} of {int(r['planned'])} planned"
           for _, r in planned.iterrows() if int(r["search_trials"]) != int(r["planned"])]
    if off:
        msg += " Differs from the planned budget (experiment.json): " + "; ".join(off) + "."
    return msg


def seeds_used(df: pd.DataFrame) -> list[int]:
    c = df[df["phase"] == "confirm"]
    return sorted(int(s) for s in (c if not c.empty else df)["seed"].unique())


def searched_of(df: pd.DataFrame) -> dict[str, list[str]]:
    """Searched parameter names per regularizer (from the ``searched`` JSON column)."""
    out: dict[str, list[str]] = {}
    if "searched" not in df.columns:
        return out
    for reg, g in df.groupby("regularizer", sort=False):
        names: list[str] = []
        for raw in g["searched"].dropna().unique():
            try:
                for n in (json.loads(raw) if isinstance(raw, str) else raw):
                    if n not in names:
                        names.append(n)
            except (TypeError, ValueError):
                pass
        out[reg] = names
    return out
