"""Seaborn figures of a sweep (Agg backend; :func:`save` writes PNG + SVG).

Every function takes data frames from :mod:`analysis.gaps` / the trial table and returns a
matplotlib Figure (or ``(None, note)`` for the Optuna importances when they cannot be computed).
"""
from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import sys

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # headless by default; a notebook's inline backend is kept
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from study.regularizers import label as technique_label  # noqa: E402
from study.regularizers import settings as catalog_settings  # noqa: E402

from .gaps import reg_sort_key  # noqa: E402

log = logging.getLogger(__name__)

LOSS_LABEL = "loss (cross-entropy, nats)"
ACC_LABEL = "accuracy (fraction correct)"
# Axis labels and log scales of the swept settings, from the catalog's declarations.
PARAM_LABEL = {"lr": "learning rate (log scale)",
               **{k: st.label + (" (log scale)" if st.log else "") for k, st in catalog_settings().items()}}
LOG_PARAMS = {"lr"} | {k for k, st in catalog_settings().items() if st.log}
STATUS_COLORS = {"completed": "#1b9e77", "stopped": "#999999", "errored": "#d95f02",
                 "diverged": "#e7298a", "running": "#7570b3"}
SPLIT_COLORS = {"train (clean)": "#1f77b4", "train (as trained)": "#9ecae1", "val": "#d62728"}


def theme() -> None:
    sns.set_theme(context="notebook", style="whitegrid", font_scale=0.9)


def save(fig, outdir: str | Path, name: str, dpi: int = 110) -> list[Path]:
    """Write ``name.png`` and ``name.svg`` into ``outdir``; close the figure."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = outdir / f"{name}.{ext}"
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def _regs(df: pd.DataFrame) -> list[str]:
    return sorted(df["regularizer"].unique(), key=reg_sort_key)


# ------------------------------------------------------------------------------------- curves
def curve_bands(rows: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean and 95% bootstrap CI over runs per (regularizer, quantity, split, epoch): the numbers
    the curve figure draws (same bootstrap as gaps.csv)."""
    from .stats import bootstrap_ci

    recs = []
    for q, cols in (("loss", ("train_clean_loss", "train_loss", "val_loss")),
                    ("accuracy", ("train_clean_acc", "train_acc", "val_acc"))):
        for col, split in zip(cols, SPLIT_COLORS):
            for (reg, ep), v in rows.groupby(["regularizer", "epoch"], sort=True)[col]:
                m, lo, hi = bootstrap_ci(v.to_numpy(float), n_boot=n_boot, seed=seed)
                recs.append({"regularizer": reg, "quantity": q, "split": split, "epoch": int(ep),
                             "mean": m, "ci_lo": lo, "ci_hi": hi, "n": int(v.notna().sum())})
    return pd.DataFrame(recs)


def curves(rows: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, title: str | None = None):
    """Loss (top row) and accuracy (bottom row) per epoch, one column per technique; train clean,
    train as trained and val; mean over seeds with a 95% bootstrap CI band (the study's Figs 1-10)."""
    theme()
    bands = curve_bands(rows, n_boot=n_boot, seed=seed)
    regs = _regs(rows)
    fig, axes = plt.subplots(2, len(regs), figsize=(2.9 * len(regs) + 0.6, 6.0), squeeze=False, sharex=True)
    for i, q in enumerate(("loss", "accuracy")):
        qb = bands[bands["quantity"] == q]
        lo_all, hi_all = np.nanmin(qb[["mean", "ci_lo"]].to_numpy()), np.nanmax(qb[["mean", "ci_hi"]].to_numpy())
        pad = 0.04 * (hi_all - lo_all if np.isfinite(hi_all - lo_all) and hi_all > lo_all else 1.0)
        for j, reg in enumerate(regs):
            ax = axes[i, j]
            n = rows.loc[rows["regularizer"] == reg, "trial_id"].nunique()
            for split, color in SPLIT_COLORS.items():
                b = qb[(qb["regularizer"] == reg) & (qb["split"] == split)]
                ax.plot(b["epoch"], b["mean"], color=color, lw=1.8, label=split,
                        ls="--" if split == "train (as trained)" else "-")
                ax.fill_between(b["epoch"], b["ci_lo"], b["ci_hi"], color=color, alpha=0.22, lw=0)
            ax.set_ylim(lo_all - pad, hi_all + pad)
            ax.set_title(f"{technique_label(reg)} — {q}\n(n={n} seed{'s' if n != 1 else ''})", fontsize=9)
            ax.set_xlabel("epoch" if i == 1 else "")
            ax.set_ylabel((LOSS_LABEL if q == "loss" else ACC_LABEL) if j == 0 else "")
            if j > 0:
                ax.tick_params(labelleft=False)
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, frameon=False, bbox_to_anchor=(0.5, -0.04))
    fig.suptitle(title or "Learning curves per technique (mean over seeds, 95% bootstrap CI band)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------- gaps
def gaps(ps: pd.DataFrame, wide: pd.DataFrame, *, title: str | None = None):
    """Final-epoch val loss, loss gap and accuracy gap per technique: seeds as dots, mean with
    the 95% bootstrap CI from ``gaps.csv`` as error bar, p-value vs ``none`` above each."""
    theme()
    panels = [("final_val_loss", "val loss (nats)", "Validation loss, final epoch"),
              ("final_gap_loss", "val − clean train loss (nats)", "Loss gap, final epoch"),
              ("final_gap_acc", "clean train − val accuracy (fraction)", "Accuracy gap, final epoch")]
    regs = _regs(ps)
    labels = [technique_label(r).replace(" (", "\n(").replace(" regularization", "\nregularization")
              for r in regs]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    pal = dict(zip(regs, sns.color_palette("colorblind", len(regs))))
    for ax, (m, ylabel, ttl) in zip(axes, panels):
        sns.stripplot(data=ps, x="regularizer", y=m, order=regs, hue="regularizer", palette=pal, ax=ax,
                      alpha=0.55, size=5, jitter=0.12, legend=False)
        w = wide.set_index("regularizer")
        for i, r in enumerate(regs):
            if r not in w.index:
                continue
            mean, lo, hi = w.at[r, f"{m}_mean"], w.at[r, f"{m}_ci_lo"], w.at[r, f"{m}_ci_hi"]
            yerr = None
            if np.isfinite(lo) and np.isfinite(hi):
                yerr = [[mean - lo], [hi - mean]]
            ax.errorbar([i], [mean], yerr=yerr, fmt="D", color="black", ms=6, capsize=6, lw=1.6, zorder=5)
            p = w.at[r, f"{m}_p"] if f"{m}_p" in w.columns else math.nan
            if r != "none" and np.isfinite(p):
                top = np.nanmax([hi if np.isfinite(hi) else mean, ps.loc[ps["regularizer"] == r, m].max()])
                ax.annotate(("p<0.001" if p < 1e-3 else f"p={p:.3f}") + (" *" if p < 0.05 else ""),
                            (i, top), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        if "none" in w.index and np.isfinite(w.at["none", f"{m}_mean"]):
            ax.axhline(w.at["none", f"{m}_mean"], ls="--", color="grey", lw=1, label="no regularization (mean)")
        ax.set_xticks(range(len(regs)))
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_xlabel("")
        ax.set_ylabel(ylabel)
        ax.set_title(ttl)
        ax.margins(y=0.15)
    n = ", ".join(f"{r}: {int(k)}" for r, k in wide.set_index("regularizer")["n_seeds"].items())
    fig.suptitle((title or "Generalization gap per technique")
                 + f"\nmean ◆ with 95% bootstrap CI, dots = seeds (n: {n}); p = Welch t-test vs none, * p<0.05",
                 y=1.04, fontsize=11)
    axes[0].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------- strength vs gap
def _sci(v: float, _pos=None) -> str:
    """Compact tick label for log axes: 2e-04 -> "2e-4"."""
    if v <= 0:
        return ""
    m, e = f"{v:.0e}".split("e")
    return f"{m}e{int(e)}"


def last_epoch_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Each trial's last epoch row (where an ASHA-stopped trial ended)."""
    return df.sort_values("epoch").groupby("trial_id", sort=False).tail(1).reset_index(drop=True)


def strength(search: pd.DataFrame, params: list[str], *, title: str | None = None):
    """One row per swept parameter: its value vs the val loss and vs the loss gap at the trial's
    last epoch (search phase). Log axis for lr and the catalog's log-scale strengths (and any
    parameter spanning > 2 decades); colour = the regularizer; marker = ASHA status (stopped
    trials ended early, at their last rung)."""
    from matplotlib.lines import Line2D

    theme()
    last = last_epoch_rows(search)
    last = last[np.isfinite(last["val_loss"]) & ~last["status"].isin(["errored", "diverged"])]
    params = [p for p in params if p in last.columns and last[p].notna().any()]
    if not params:
        return None
    fig, axes = plt.subplots(len(params), 2, figsize=(11.5, 3.0 * len(params)), squeeze=False)
    regs = _regs(last)
    pal = dict(zip(regs, sns.color_palette("colorblind", len(regs))))
    markers = {"completed": ("o", 60, 0.95), "stopped": ("X", 55, 0.6), "running": ("s", 45, 0.8)}
    for i, p in enumerate(params):
        sub = last[last[p].notna()]
        logx = p in LOG_PARAMS or (sub[p].min() > 0 and sub[p].max() / sub[p].min() > 100)
        for j, (m, ylabel) in enumerate((("val_loss", "val loss at last epoch (nats)"),
                                          ("gap_loss", "loss gap at last epoch (nats)"))):
            ax = axes[i, j]
            for st, g in sub.groupby("status", sort=False):
                mk, size, alpha = markers.get(st, ("D", 45, 0.8))
                ax.scatter(g[p], g[m], c=[pal[r] for r in g["regularizer"]], marker=mk, s=size, alpha=alpha,
                           edgecolors="black", linewidths=0.4)
            if logx:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_sci))
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xlabel(PARAM_LABEL.get(p, p))
            ax.set_ylabel(ylabel)
            who = ", ".join(sorted(sub["regularizer"].unique(), key=reg_sort_key))
            ax.set_title(f"{p} vs {'val loss' if m == 'val_loss' else 'loss gap'}  ({who}; {len(sub)} trials)",
                         fontsize=9)
            if j == 1:
                handles = [Line2D([], [], ls="", marker=markers.get(st, ("D",))[0], color="black", alpha=0.7,
                                  label=f"{st}" + (" (ASHA)" if st == "stopped" else ""))
                           for st in sub["status"].unique()]
                handles += [Line2D([], [], ls="", marker="o", color=pal[r], label=r)
                            for r in sorted(sub["regularizer"].unique(), key=reg_sort_key)]
                ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1),
                          fontsize=7, frameon=False)
    fig.suptitle((title or "Regularization strength vs generalization (search phase)")
                 + "\neach trial at the last epoch it trained (ASHA-stopped trials ✕ ended early)", y=1.0)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------- ASHA
def rungs(experiment: dict[str, Any] | None, max_t: int) -> list[int]:
    s = (experiment or {}).get("search", {}) or {}
    grace = s.get("grace_period") or s.get("asha_grace_period")
    red = s.get("reduction_factor") or s.get("asha_reduction_factor")
    mt = s.get("max_t") or max_t
    if not grace or not red or red <= 1:
        return []
    out, r = [], int(grace)
    while r < mt:
        out.append(r)
        r = int(r * red)
    return out


def asha(search: pd.DataFrame, experiment: dict[str, Any] | None = None, *, title: str | None = None):
    """ASHA's view: left, val loss per epoch of every search trial coloured by final status with
    the rung epochs marked; right, epochs each trial got, per regularizer."""
    theme()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.4, 1]})
    max_t = int(search["max_epochs"].max()) if len(search) else 0
    rr = rungs(experiment, max_t)
    statuses = [s for s in STATUS_COLORS if s in set(search["status"])] + \
        sorted(set(search["status"]) - set(STATUS_COLORS))
    sns.lineplot(data=search, x="epoch", y="val_loss", units="trial_id", estimator=None, hue="status",
                 hue_order=statuses, palette={s: STATUS_COLORS.get(s, "black") for s in statuses},
                 ax=a1, lw=1.1, alpha=0.8, marker="o", markersize=7)
    # Markers matter: a trial stopped at the first rung has one point, which a line alone hides.
    for r in rr:
        a1.axvline(r, ls=":", color="black", lw=1)
        a1.text(r, 1.0, f" rung {r}", transform=a1.get_xaxis_transform(), fontsize=8, va="top")
    a1.set_xlabel("epoch")
    a1.xaxis.set_major_locator(MaxNLocator(integer=True))
    a1.set_ylabel("val loss (nats)")
    a1.set_title("Validation loss of every search trial")
    a1.legend(title="trial status", fontsize=8, title_fontsize=8)
    trials = last_epoch_rows(search)
    regs = _regs(trials)
    sns.stripplot(data=trials, x="regularizer", y="epoch", order=regs, hue="status", hue_order=statuses,
                  palette={s: STATUS_COLORS.get(s, "black") for s in statuses}, ax=a2, jitter=0.25, size=6,
                  alpha=0.85, edgecolor="black", linewidth=0.3)
    for r in rr:
        a2.axhline(r, ls=":", color="black", lw=1)
    a2.axhline(max_t, ls="--", color="grey", lw=1)
    a2.set_xticks(range(len(regs)))
    a2.set_xticklabels([r.replace("_", "_\n") for r in regs], fontsize=8)
    a2.set_xlabel("regularizer")
    a2.set_ylabel("epochs trained")
    a2.set_ylim(0, max_t + 1)
    a2.yaxis.set_major_locator(MaxNLocator(integer=True))
    a2.set_title("Epochs used per trial (dotted: rungs, dashed: max)")
    if a2.get_legend() is not None:
        a2.get_legend().remove()
    n = len(trials)
    stopped = int((trials["status"] == "stopped").sum())
    fig.suptitle((title or "ASHA early stopping") + f": {stopped} of {n} search trials stopped early, "
                 f"{int(trials['epoch'].sum())} of {n * max_t} possible epochs trained", y=1.02)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- budget curves
def budget_curves(curves: pd.DataFrame, *, title: str | None = None):
    """Expected best validation loss against the number of search trials, one line per technique
    with a band of +-1 SD of the best (analysis.budget_curves)."""
    theme()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    regs = _regs(curves)
    colors = dict(zip(regs, sns.color_palette("tab10", len(regs))))
    for reg in regs:
        g = curves[curves["regularizer"] == reg].sort_values("trials")
        diverged = int(g["diverged_trials"].iloc[0])
        ax.plot(g["trials"], g["expected_best_val_loss"], marker="o", ms=4, lw=1.5, color=colors[reg],
                label=f"{technique_label(reg)} ({int(g['trials'].max())} trials"
                      f"{f'; {diverged} diverged, left out' if diverged else ''})")
        ax.fill_between(g["trials"], g["expected_best_val_loss"] - g["sd_best_val_loss"],
                        g["expected_best_val_loss"] + g["sd_best_val_loss"], color=colors[reg], alpha=0.15, lw=0)
    ax.set_xlabel("search trials (budget)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("expected best val loss (nats)")
    ax.legend(fontsize=8, title="technique", title_fontsize=8)
    ax.set_title(title or "Expected best validation loss by search budget (band: ±1 SD of the best)")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------- Optuna importance
def param_importances(study, *, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """(importances, notes): tidy frame ``scope, param, importance`` for the whole study and for
    the trials of each regularizer (when the study has a ``regularizer`` parameter); notes say
    what was skipped and why."""
    notes: list[str] = []
    if study is None:
        return (pd.DataFrame(columns=["scope", "param", "importance", "n_trials", "evaluator"]),
                ["no Optuna study found"])
    import optuna
    from optuna.importance import get_param_importances
    from optuna.trial import TrialState

    evaluator, ev_name = importance_evaluator(seed)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    target = None
    if len(study.directions) > 1:
        target = lambda t: t.values[0]  # noqa: E731
    scopes: list[tuple[str, list]] = [("all trials", done)]
    regs = sorted({t.params["regularizer"] for t in done if "regularizer" in t.params}, key=reg_sort_key)
    for r in regs:
        scopes.append((r, [t for t in done if t.params.get("regularizer") == r]))
    recs = []
    for scope, trials in scopes:
        if scope == "all trials":
            params = None
            n_params = len({p for t in trials for p in t.params})
        else:  # the parameters every trial of this regularizer has, minus the constant "regularizer"
            common = set.intersection(*(set(t.params) for t in trials)) if trials else set()
            params = sorted(common - {"regularizer"})
            n_params = len(params)
        if scope != "all trials" and n_params == 1:
            notes.append(f"{scope}: skipped (one searched parameter, {params[0]}: its importance is 1 by definition)")
            continue
        if len(trials) < 2 or n_params == 0:
            notes.append(f"{scope}: skipped ({len(trials)} completed trial(s), {n_params} param(s); "
                         "need at least 2 and 1)")
            continue
        try:
            sub = optuna.create_study(directions=study.directions)
            sub.add_trials(trials)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = get_param_importances(sub, evaluator=evaluator, params=params, target=target)
        except Exception as e:  # noqa: BLE001
            notes.append(f"{scope}: skipped ({type(e).__name__}: {e})")
            continue
        if not imp:
            notes.append(f"{scope}: skipped (no parameter shared by all its trials)")
        for p, v in imp.items():
            recs.append({"scope": scope, "param": p, "importance": float(v), "n_trials": len(trials),
                         "evaluator": ev_name})
    return pd.DataFrame(recs, columns=["scope", "param", "importance", "n_trials", "evaluator"]), notes


def importance_evaluator(seed: int = 0):
    """(evaluator, name): fANOVA when scikit-learn is installed (Optuna's default), else PED-ANOVA
    (Optuna's dependency-free evaluator)."""
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    try:
        import sklearn  # noqa: F401

        return FanovaImportanceEvaluator(seed=seed), "fANOVA"
    except ImportError:
        return PedAnovaImportanceEvaluator(), "PED-ANOVA"


def importances(imp: pd.DataFrame, notes: list[str] | None = None, *, title: str | None = None):
    """Bar chart per scope (all trials, then each regularizer) of parameter importances; None when empty."""
    if imp is None or imp.empty:
        return None
    theme()
    scopes = list(dict.fromkeys(imp["scope"]))
    fig, axes = plt.subplots(1, len(scopes), figsize=(3.0 * len(scopes) + 1, 3.6), squeeze=False)
    for ax, sc in zip(axes[0], scopes):
        d = imp[imp["scope"] == sc].sort_values("importance", ascending=False)
        sns.barplot(data=d, y="param", x="importance", ax=ax, color="#4c72b0", orient="h", width=0.6)
        ax.set_xlim(0, 1.05)
        ax.set_xlabel(f"importance ({d['evaluator'].iloc[0]}, normalised)")
        ax.set_ylabel("parameter" if ax is axes[0][0] else "")
        n = int(d["n_trials"].iloc[0])
        ax.set_title(f"{technique_label(sc)}\n({n} completed trials)", fontsize=9)
    fig.suptitle(title or "Optuna parameter importances for the sweep objective", y=1.03)
    if notes:
        fig.text(0.01, -0.04, "Skipped: " + "; ".join(notes), fontsize=7, ha="left", va="top", wrap=True)
    fig.tight_layout()
    return fig
