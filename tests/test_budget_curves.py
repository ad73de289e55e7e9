"""Budget curves (analysis.budget_curves): expected best validation loss of n search trials
(Dodge et al. 2019), checked against hand computations on small known tables."""
from __future__ import annotations

import math

import pandas as pd
import pytest

import tablegen
from analysis import budget_curves as BC
from analysis.summarize import summarize


def test_expected_best_by_hand():
    c = BC.expected_best([3.0, 1.0, 2.0])
    # min of n draws from {1, 2, 3}: P(min=1) = 1-(2/3)^n, P(min=2) = (2/3)^n-(1/3)^n, P(min=3) = (1/3)^n
    assert c.trials.tolist() == [1, 2, 3]
    assert c.expected_best_val_loss.tolist() == pytest.approx([2.0, 14 / 9, 36 / 27])
    second_moment = 5 / 9 * 1 + 3 / 9 * 4 + 1 / 9 * 9
    assert c.sd_best_val_loss.tolist() == pytest.approx(
        [math.sqrt(2 / 3), math.sqrt(second_moment - (14 / 9) ** 2), math.sqrt(19 / 27 + 7 / 27 * 4 + 1 / 27 * 9
                                                                              - (36 / 27) ** 2)])
    assert BC.expected_best([]).empty
    assert BC.expected_best([2.0, float("nan"), float("inf")]).expected_best_val_loss.tolist() == [2.0]


def rows(reg: str, tid: str, losses: list[float], status: str = "completed") -> list[dict]:
    return [{"experiment": "x", "phase": "search", "trial_id": tid, "task": "image", "dataset": "tinyimagenet",
             "model": "alexnet", "regularizer": reg, "seed": 0, "epoch": e + 1, "val_loss": v, "val_acc": 0.5,
             "gap_loss": 0.1, "gap_acc": 0.0, "status": status} for e, v in enumerate(losses)]


def table(*trials: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([r for t in trials for r in t])


def test_curves_from_a_known_table_and_a_ranking_that_flips():
    """A: trials whose best epochs reach 1.0 and 3.0; B: 1.5 and 1.6. One trial: B is better
    (1.55 against 2.0); two: A (0.75*1.0 + 0.25*3.0 = 1.5 against 0.75*1.5 + 0.25*1.6 = 1.525).
    An errored trial is left out; a diverged one is counted apart."""
    t = table(rows("A", "a1", [2.0, 1.0, 1.2]), rows("A", "a2", [3.0]), rows("A", "a3", [0.1], "errored"),
              rows("B", "b1", [1.5]), rows("B", "b2", [1.7, 1.6]), rows("B", "b3", [1.0, float("nan")], "diverged"))
    c = BC.budget_curves(t).set_index(["regularizer", "trials"])
    assert c.loc[("A", 1), "expected_best_val_loss"] == pytest.approx(2.0)
    assert c.loc[("A", 2), "expected_best_val_loss"] == pytest.approx(1.5)
    assert c.loc[("B", 1), "expected_best_val_loss"] == pytest.approx(1.55)
    assert c.loc[("B", 2), "expected_best_val_loss"] == pytest.approx(1.525)
    assert c.loc[("A", 1), "search_trials"] == 2 and c.loc[("B", 1), "diverged_trials"] == 1
    assert c.loc[("B", 1), "search_trials"] == 3 and len(c.loc["B"]) == 2
    assert BC.ranking_statement(BC.budget_curves(t)) == (
        "the ranking by expected best validation loss changes with the budget: B < A with 1 search trial, "
        "A < B with 2 (changes at n = 2).")
    same = table(rows("A", "a1", [1.0]), rows("A", "a2", [1.2]), rows("B", "b1", [2.0]), rows("B", "b2", [2.5]))
    assert BC.ranking_statement(BC.budget_curves(same)) == (
        "the ranking by expected best validation loss is the same at every budget from 1 to 2 search trials: "
        "A < B.")


def test_summarize_writes_the_curves_and_their_figure(tmp_path):
    d = tablegen.make_experiment(tmp_path / "exp")
    s = summarize(d, n_boot=200)
    written = pd.read_csv(d / "analysis" / "budget_curves.csv")
    assert list(written.columns) == list(BC.COLUMNS) and len(written) == len(s.budget_curves) > 0
    per_reg = written.groupby("regularizer").trials.max()
    finite = BC.trial_values(s.trials).dropna(subset=["best_val_loss"]).groupby("regularizer").size()
    assert per_reg.to_dict() == finite.to_dict()
    assert (d / "analysis" / "figures" / "budget_curves.png").stat().st_size > 10_000
