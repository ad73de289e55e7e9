"""Analysis of a regstudy sweep: trial table -> gap summaries with error bars, figures, report.

Entry points::

    python -m analysis.summarize results/<name>   # gaps.csv, table1.md, figures/ under results/<name>/analysis/
    python -m analysis.report results/<name>      # report.html (self-contained) + report.md

Library (used by the CLIs and the notebooks in ``analysis/notebooks``):

* :mod:`analysis.loading`  -- read ``trials.parquet`` / ``experiment.json`` / ``optuna.db``
* :mod:`analysis.groups`   -- the (task, dataset, model) groups techniques are compared within
* :mod:`analysis.stats`    -- seeded bootstrap CIs, Welch / permutation tests, Holm correction
* :mod:`analysis.gaps`     -- per-seed final/best-epoch metrics, gap summary, Table 1 analogue, budget
* :mod:`analysis.plots`    -- seaborn figures (Agg backend), saved as PNG + SVG
* :mod:`analysis.conclude` -- plain-language conclusions generated from the numbers
"""
from __future__ import annotations

import sys

import matplotlib

# Never a display. Only when pyplot is not imported yet, so a notebook that already chose
# `%matplotlib inline` keeps its backend.
if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

from .loading import (  # noqa: E402
    load_experiment,
    load_study,
    load_trials,
    resolve_results_dir,
)
from .stats import bootstrap_ci, diff_ci, holm, permutation_pvalue, welch_pvalue  # noqa: E402
from .gaps import (  # noqa: E402
    budget_statement,
    budget_table,
    gap_summary,
    per_seed_metrics,
    select_rows,
    table1,
    table1_epoch,
    table1_markdown,
)

__all__ = [
    "bootstrap_ci",
    "budget_statement",
    "budget_table",
    "diff_ci",
    "gap_summary",
    "holm",
    "load_experiment",
    "load_study",
    "load_trials",
    "per_seed_metrics",
    "permutation_pvalue",
    "resolve_results_dir",
    "select_rows",
    "table1",
    "table1_epoch",
    "table1_markdown",
    "welch_pvalue",
]
