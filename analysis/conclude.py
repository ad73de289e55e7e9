"""Plain-language conclusions generated from the gap summary (``gaps.csv``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from study.regularizers import label as technique_label
from study.regularizers import seed_table1_all

from .gaps import SOURCE_CONFIRM, SOURCE_NONE, SOURCE_SEARCH, fmt_ci, fmt_p
from .groups import GROUP_KEYS, shows_paper, title
from .stats import TESTS


def p_eq(p: float) -> str:
    """"p = 0.012" / "p < 0.001"."""
    t = fmt_p(p)
    return f"p {t[0]} {t[1:]}" if t.startswith("<") else f"p = {t}"


def _name(reg: str) -> str:
    return technique_label(reg)


def _diff_phrase(r: pd.Series, m: str, unit: str) -> str:
    d, lo, hi, p = r[f"{m}_diff_none"], r[f"{m}_diff_ci_lo"], r[f"{m}_diff_ci_hi"], r[f"{m}_p"]
    if not np.isfinite(d):
        return ""
    s = f"Δ vs none {d:+.3f}{unit}"
    if np.isfinite(lo):
        s += f" [{lo:+.3f}, {hi:+.3f}]"
    if np.isfinite(p):
        s += f", {p_eq(p)}"
    return s


def conclusions(wide: pd.DataFrame, *, alpha: float = 0.05, test: str = "welch") -> list[str]:
    """Bullet points per (task, dataset, model): which technique lowers val loss most, which
    narrows the gap most, which differences vs ``none`` are significant at ``alpha``, the caveats,
    and -- in the original report's setting only -- whether its finding holds here."""
    out: list[str] = []
    if wide is None or wide.empty:
        return ["No runs to summarise."]
    tname = TESTS[test][0]
    groups = list(wide.groupby(GROUP_KEYS, sort=False))
    for key, g in groups:
        pre = f"**{title(key)}:** " if len(groups) > 1 else ""
        g = g.set_index("regularizer")
        has_none = "none" in g.index
        for m, what, unit, lower in (("final_val_loss", "the lowest validation loss", " nats", True),
                                     ("final_gap_loss", "the narrowest loss gap (val − clean train)", " nats", True),
                                     ("final_gap_acc", "the narrowest accuracy gap (clean train − val)", "", True),
                                     ("final_test_acc", "the highest test accuracy", "", False)):
            col = f"{m}_mean"
            if col not in g.columns or g[col].isna().all():
                continue
            best = g[col].idxmin() if lower else g[col].idxmax()
            r = g.loc[best]
            s = (f"{pre}{_name(best)} gives {what} at the final epoch: "
                 f"{fmt_ci(r[col], r[f'{m}_ci_lo'], r[f'{m}_ci_hi'])}")
            if has_none and best != "none":
                n = g.loc["none"]
                s += f" vs {fmt_ci(n[col], n[f'{m}_ci_lo'], n[f'{m}_ci_hi'])} without regularization"
                ph = _diff_phrase(r, m, unit)
                s += f" ({ph})" if ph else ""
            elif best == "none":
                s += " — no regularizer beats training without one on this measure"
            out.append(s + ".")
        if has_none:
            for m, label in (("final_val_loss", "validation loss"), ("final_gap_loss", "loss gap")):
                if f"{m}_p" not in g.columns:
                    continue
                others = g.drop(index="none")
                tested = others[np.isfinite(others[f"{m}_p"])]
                if tested.empty:
                    out.append(f"{pre}No {label} difference vs none could be tested (fewer than 2 runs per "
                               f"technique); the comparison is descriptive only.")
                    continue
                sig = tested[tested[f"{m}_p"] < alpha]
                ns = tested[tested[f"{m}_p"] >= alpha]
                parts = []
                if not sig.empty:
                    parts.append("significantly different from none at " + f"{alpha:g}: " + "; ".join(
                        f"{_name(k)} ({'lower' if v[f'{m}_diff_none'] < 0 else 'higher'}, {p_eq(v[f'{m}_p'])}"
                        + (", also after Holm correction" if v[f"{m}_p_holm"] < alpha else ", not after Holm correction")
                        + ")" for k, v in sig.iterrows()))
                if not ns.empty:
                    parts.append("not significant: " + "; ".join(
                        f"{_name(k)} ({p_eq(v[f'{m}_p'])})" for k, v in ns.iterrows()))
                out.append(f"{pre}{label[0].upper() + label[1:]} ({tname}, final epoch) — " + "; ".join(parts) + ".")
        paper = seed_table1_all()
        shared = [r for r in g.index if r in paper]
        ran = g.loc[shared, "final_val_loss_mean"].dropna() if "final_val_loss_mean" in g.columns else []
        if shows_paper(key) and has_none and len(ran):
            paper_best = min(paper, key=lambda k: paper[k][1])
            # (among the original report's techniques that this sweep ran)
            ours = ran.idxmin()
            agree = "agrees" if ours == paper_best else "differs"
            out.append(f"{pre}The original study found {_name(paper_best).lower()} lowest in validation loss "
                       f"(Table 1: {paper[paper_best][1]:.4g} vs {paper['none'][1]:.4g} without "
                       f"regularization, one run each, no error bars); this sweep {agree} "
                       f"({_name(ours).lower()} is lowest of its techniques here).")
        ns_ = g.loc[g["source"] != SOURCE_NONE, "n_seeds"].astype(int)
        if (g["source"] == SOURCE_NONE).any():
            which = "; ".join(f"{_name(k)} ({v['note']})" for k, v in g[g["source"] == SOURCE_NONE].iterrows())
            out.append(f"{pre}No result for {which}: a technique is compared only on trials that finished.")
        if (g["source"] == SOURCE_SEARCH).any():
            which = ", ".join(_name(k) for k in g.index[g["source"] == SOURCE_SEARCH])
            out.append(f"{pre}Caveat: {which}: no confirmation runs — the numbers are the single best search "
                       "trial (n = 1), chosen on validation loss, so they are optimistic and carry no CI or test.")
        if len(ns_) and ns_.max() > 1 and ns_.min() < 5:
            out.append(f"{pre}Caveat: only {ns_.min()}" + (f"–{ns_.max()}" if ns_.max() != ns_.min() else "")
                       + " seeds per technique. Bootstrap CIs from so few runs understate the uncertainty and "
                       "the tests have little power; a non-significant difference is not evidence of no effect. "
                       "The best configuration of each technique was picked on the same validation set.")
    return out
