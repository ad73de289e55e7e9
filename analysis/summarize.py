"""``python -m analysis.summarize results/<name>``: the trial table -> gap summaries and figures.

Writes into ``results/<name>/analysis/`` (``--out`` to change):

* ``gaps.csv``        one row per (task, dataset, model, regularizer): final- and best-epoch metrics as
                      mean, 95% bootstrap CI, SD; difference to ``none`` with CI, p-value
                      (``--test auto``: the paired t-test when every technique ran the
                      baseline's seeds, else Welch; or as chosen) and Holm-adjusted p; ``n_seeds``,
                      ``source`` ("confirm" | "search-best") and ``note``
* ``gaps_long.csv``   the same numbers, one row per metric (tidy)
* ``per_seed.csv``    the per-run values the summary is computed from
* ``table1.md`` / ``table1.csv``  the study's Table 1 analogue (loss at epoch min(--epoch, max_epochs))
* ``budget.csv``      search trials per regularizer by status, epochs and seconds spent
* ``budget_curves.csv`` expected best val_loss against the number of search trials, per
                      regularizer (``analysis.budget_curves``: Dodge et al. 2019), with its SD
* ``importances.csv`` Optuna fANOVA parameter importances (overall and per regularizer)
* ``notes.json``      the experiment's state (finished, interrupted, running), warnings and notes
                      (fallbacks, skipped figures), the settings used
* ``figures/{curves,gaps,strength,asha,budget_curves,importances}.{png,svg}`` (a ``_<task>_<dataset>_<model>``
  suffix when the table has several task/dataset/model groups)
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from study import cli, preflight
from study.config import SEED_MAX
from study.redact import redact
from study.regularizers import CatalogError, Setting

from . import budget_curves as BC
from . import gaps as G
from . import plots as P
from .groups import GROUP_KEYS, iter_groups, rows_of, slug, title
from .loading import (ExperimentState, ResultsError, experiment_state, load_experiment, load_study, load_trials,
                      resolve_results_dir, searched_params, study_storage)
from .stats import N_BOOT, TESTS

log = logging.getLogger(__name__)

KEY_METRICS = ("final_val_loss", "final_gap_loss", "final_gap_acc", "final_test_acc")
# The range of every numeric option of the analysis commands (summarize and report). A 95%
# percentile interval needs a few resamples in each 2.5% tail, hence at least 100.
OPTIONS = {s.name: s for s in (
    Setting("--n-boot", N_BOOT, 100, 1_000_000, integer=True),
    Setting("--seed", 0, 0, SEED_MAX, integer=True),
    Setting("--epoch", 25, 1, math.inf, integer=True),
)}
# What makes an analysis exit 2 (an unusable results directory or file), besides study.cli's.
BAD_INPUT = (ResultsError, CatalogError)


@dataclass
class Summary:
    results_dir: Path
    out_dir: Path
    trials: pd.DataFrame
    experiment: dict[str, Any]
    rows: pd.DataFrame
    sources: pd.DataFrame
    per_seed: pd.DataFrame
    gaps_long: pd.DataFrame
    gaps: pd.DataFrame
    table1: pd.DataFrame
    budget: pd.DataFrame
    importances: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    figures: dict[str, list[Path]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    state: ExperimentState = field(default_factory=lambda: ExperimentState("finished", ""))
    budget_curves: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def table1_md(self) -> str:
        return G.table1_markdown(self.table1, epoch=self.settings.get("epoch", 25), gaps=self.gaps,
                                 test=TESTS[self.settings["test"]][0] if self.settings.get("test") in TESTS else None)


def key_table(wide: pd.DataFrame, metrics=KEY_METRICS, digits: int = 3, *, group: bool = True) -> pd.DataFrame:
    """A compact display of ``gaps.csv``: key metrics as "mean [CI]" and Δ vs none with p
    (``group``: with the task / dataset / model column, for a table of several groups)."""
    out = pd.DataFrame({"technique": wide["technique"], "n": wide["n_seeds"], "source": wide["source"]})
    if group:
        out.insert(0, "task / dataset / model", [title(k) for k in wide[GROUP_KEYS].itertuples(index=False)])
    for m in metrics:
        if f"{m}_mean" not in wide.columns or wide[f"{m}_mean"].isna().all():
            continue
        name = m.replace("final_", "")
        out[name] = [G.fmt_ci(*r, digits) for r in wide[[f"{m}_mean", f"{m}_ci_lo", f"{m}_ci_hi"]].to_numpy()]
        out[f"Δ{name} vs none"] = [G.fmt_ci(*r, digits) if r[0] == r[0] else "–"
                                   for r in wide[[f"{m}_diff_none", f"{m}_diff_ci_lo", f"{m}_diff_ci_hi"]].to_numpy()]
        out[f"p ({name})"] = [G.fmt_p(p) for p in wide[f"{m}_p"]]
    return out


def summarize(results: str | Path, out: str | Path | None = None, *, test: str = G.AUTO,
              n_boot: int = N_BOOT, seed: int = 0, epoch: int = 25, figures: bool = True,
              write: bool = True) -> Summary:
    """Compute everything (and, with ``write``, write the files listed in the module doc)."""
    d = resolve_results_dir(results)
    out_dir = Path(out) if out else d / "analysis"
    trials = load_trials(d)
    exp = load_experiment(d)
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", G.AnalysisWarning)
        rows, sources = G.select_rows(trials)
    notes += [str(w.message) for w in caught]
    ps = G.per_seed_metrics(rows)
    asked = test
    if test == G.AUTO:  # (paired when the runs are paired by seed, as a comparison's are)
        confirmed = ps[ps["phase"] == "confirm"] if len(ps) else ps
        test, why = G.design_test(confirmed)
        alone = sorted(set(ps["regularizer"]) - set(confirmed["regularizer"])) if len(ps) else []
        if alone:  # (their one search trial has no test under either)
            why += f"; without confirmation runs, so untested: {', '.join(alone)}"
        notes.append(f"test: {TESTS[test][0]} (--test auto: {why})")
    long = G.gap_summary_long(ps, sources, test=test, n_boot=n_boot, seed=seed)
    wide = G.gap_summary(ps, sources, long=long)
    t1 = G.table1(rows, sources, epoch=epoch, n_boot=n_boot, seed=seed)
    bt = G.budget_table(trials, exp)
    study = load_study(d, exp)
    if study is not None:  # (which database: a copied experiment must not read the original's)
        notes.append(f"Optuna study {study.study_name!r} read from {redact(study_storage(d, exp))}")
    imp, imp_notes = P.param_importances(study, seed=seed)
    notes += [f"Optuna importances — {n}" for n in imp_notes]
    state = experiment_state(d, trials, exp)
    small = wide[(wide["source"] == G.SOURCE_CONFIRM) & (wide["n_seeds"] < 5)] if not wide.empty else wide
    if not small.empty:
        lo_n, hi_n = int(small["n_seeds"].min()), int(small["n_seeds"].max())
        notes.append(f"only {lo_n}{'' if lo_n == hi_n else f'–{hi_n}'} seeds per technique: "
                     "bootstrap CIs from so few values are too narrow and t-tests have little power")
    s = Summary(d, out_dir, trials, exp, rows, sources, ps, long, wide, t1, bt, imp, notes,
                settings={"test": test, "test_asked": asked, "n_boot": n_boot, "seed": seed, "epoch": epoch, "alpha": 0.05},
                state=state, budget_curves=BC.budget_curves(trials))
    if write:
        _write(s, study_loaded=study is not None, figures=figures)
    return s


def _write(s: Summary, *, study_loaded: bool, figures: bool) -> None:
    o = s.out_dir
    o.mkdir(parents=True, exist_ok=True)
    s.gaps.to_csv(o / "gaps.csv", index=False)
    s.gaps_long.to_csv(o / "gaps_long.csv", index=False)
    s.per_seed.to_csv(o / "per_seed.csv", index=False)
    s.table1.to_csv(o / "table1.csv", index=False)
    (o / "table1.md").write_text(s.table1_md)
    s.budget.to_csv(o / "budget.csv", index=False)
    s.budget_curves.to_csv(o / "budget_curves.csv", index=False)
    s.importances.to_csv(o / "importances.csv", index=False)
    if figures:
        s.figures = make_figures(s)
    meta = {"results_dir": str(s.results_dir), "state": s.state.state, "state_detail": s.state.detail,
            "settings": s.settings, "notes": s.notes,
            "sources": s.sources.to_dict(orient="records"), "optuna_study_loaded": study_loaded,
            "figures": {k: [p.name for p in v] for k, v in s.figures.items()}}
    (o / "notes.json").write_text(json.dumps(meta, indent=2, default=str))


def make_figures(s: Summary) -> dict[str, list[Path]]:
    """All figures into ``<out>/figures``; returns {figure name: [png, svg]}."""
    fdir = s.out_dir / "figures"
    groups = list(iter_groups(s.trials))
    multi = len(groups) > 1
    out: dict[str, list[Path]] = {}
    params = searched_params(s.trials)
    for key, g in groups:
        sfx = f"_{slug(key)}" if multi else ""
        ttl = title(key)
        rows = rows_of(s.rows, key)
        ps = rows_of(s.per_seed, key) if not s.per_seed.empty else s.per_seed
        wide = rows_of(s.gaps, key) if not s.gaps.empty else s.gaps
        search = g[g["phase"] == "search"]
        if not rows.empty:
            src = ("confirmation runs" if (rows_of(s.sources, key)["source"] == G.SOURCE_CONFIRM).all()
                   else "confirm runs / best search trial")
            out["curves" + sfx] = P.save(P.curves(rows, seed=s.settings["seed"],
                                                  title=f"Learning curves per technique — {ttl} ({src}; mean, 95% CI band over seeds)"),
                                         fdir, "curves" + sfx)
            out["gaps" + sfx] = P.save(P.gaps(ps, wide, title=f"Generalization gap per technique — {ttl}"),
                                       fdir, "gaps" + sfx)
        if not search.empty:
            fig = P.strength(search, params, title=f"Regularization strength vs generalization — {ttl}")
            if fig is not None:
                out["strength" + sfx] = P.save(fig, fdir, "strength" + sfx)
            else:
                s.notes.append(f"{ttl}: no swept numeric parameter found: strength figure skipped")
            out["asha" + sfx] = P.save(P.asha(search, s.experiment, title=f"ASHA early stopping — {ttl}"),
                                       fdir, "asha" + sfx)
            curves = rows_of(s.budget_curves, key)
            if curves["regularizer"].nunique() >= 1:
                out["budget_curves" + sfx] = P.save(
                    P.budget_curves(curves, title=f"Expected best val loss by search budget — {ttl}"),
                    fdir, "budget_curves" + sfx)
        else:
            s.notes.append(f"{ttl}: no search-phase trials: strength and ASHA figures skipped")
    fig = P.importances(s.importances, [n.split("— ", 1)[-1] for n in s.notes if n.startswith("Optuna")])
    if fig is not None:
        out["importances"] = P.save(fig, fdir, "importances")
    else:
        s.notes.append("Optuna importance figure skipped (no study, or fewer than 2 completed trials/params)")
    return out


def add_options(ap: argparse.ArgumentParser) -> None:
    """The options summarize and report share (ranges: ``OPTIONS``)."""
    ap.add_argument("results", help="experiment directory results/<name> (or its trials.parquet)")
    ap.add_argument("--out", help="output directory (default: <results>/analysis)")
    ap.add_argument("--test", choices=(G.AUTO, *TESTS), default=G.AUTO,
                    help="test vs none: welch, permutation (unpaired), paired (t-test), wilcoxon (signed-rank; "
                    "paired: runs matched by seed, as the confirmation phase's are); default auto: paired when "
                    "every technique ran the baseline's seeds, else welch")
    for name, st in OPTIONS.items():
        helps = {"--n-boot": "bootstrap resamples", "--seed": "bootstrap / permutation seed",
                 "--epoch": "Table 1 epoch, capped at max_epochs"}
        ap.add_argument(name, type=int, default=int(st.default),
                        help=f"{helps[name]} (default {int(st.default)}; allowed {st.allowed()})")


def check_options(a: argparse.Namespace) -> None:
    """Every number in range and the output directory writable, before any work (UsageError)."""
    for name, st in OPTIONS.items():
        try:
            st.check(getattr(a, name[2:].replace("-", "_")))
        except CatalogError as e:
            raise cli.UsageError(str(e)) from None
    resolve_results_dir(a.results)
    if a.out:
        preflight.output_dir(a.out, "--out")


def print_state(state: ExperimentState, results: str) -> None:
    """The experiment's state, on stderr: whether these numbers are final."""
    print(f"experiment {results}: {state.line()}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Exit codes (study.cli): 0 written, 1 failed, 2 bad option or unusable results, 130 interrupted."""
    return cli.run(lambda: _main(argv), bad_input=BAD_INPUT)


def _main(argv: list[str] | None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.summarize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(ap)
    ap.add_argument("--no-figures", action="store_true", help="skip the figures")
    a = ap.parse_args(argv)
    check_options(a)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    s = summarize(a.results, a.out, test=a.test, n_boot=a.n_boot, seed=a.seed, epoch=a.epoch,
                  figures=not a.no_figures)
    print_state(s.state, a.results)
    if s.state.state != "finished":
        print(f"**Experiment {s.state.state}:** {s.state.detail}\n")
    print(s.table1_md)
    print(G.markdown_table(key_table(s.gaps)))
    print()
    print(G.budget_statement(s.budget))
    for n in s.notes:
        print(f"note: {n}")
    print(f"\nwrote {s.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
