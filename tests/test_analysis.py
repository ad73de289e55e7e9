"""Tests of the analysis package: hand-built trial tables with known answers, plus summarize +
report + the notebooks on a generated fixture experiment (tests/tablegen.py)."""
from __future__ import annotations

import json
import math
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from study.regularizers import label as technique_label
from scipy import stats as st

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import analysis as A  # noqa: E402
from analysis import gaps as G  # noqa: E402
from analysis import stats as S  # noqa: E402
from analysis.loading import normalise, searched_params  # noqa: E402

import tablegen  # noqa: E402


# --------------------------------------------------------------------------- hand-built tables
def run_rows(reg: str, seed: int, train_clean: list[float], val: list[float], *, phase: str = "confirm",
             status: str = "completed", max_epochs: int | None = None, tid: str | None = None,
             train: list[float] | None = None, test_acc: float | None = None, **params) -> pd.DataFrame:
    n = len(val)
    train = train if train is not None else [x + 0.1 for x in train_clean]
    df = pd.DataFrame({
        "experiment": "hand", "phase": phase, "trial_id": tid or f"{phase}_{reg}_{seed}", "task": "image",
        "model": "alexnet", "regularizer": reg, "seed": seed, "max_epochs": max_epochs or n,
        "epoch": np.arange(1, n + 1), "train_loss": train, "train_acc": 0.5, "train_clean_loss": train_clean,
        "train_clean_acc": [0.9 - 0.01 * i for i in range(n)], "val_loss": val,
        "val_acc": [0.6 - 0.01 * i for i in range(n)], "status": status, "epoch_time_s": 2.0,
        "searched": json.dumps(sorted(params)),
    })
    df["gap_loss"] = df["val_loss"] - df["train_clean_loss"]
    df["gap_acc"] = df["train_clean_acc"] - df["val_acc"]
    for k, v in params.items():
        df[k] = v
    df["test_acc"] = np.nan
    if test_acc is not None:
        df.loc[df.index[-1], "test_acc"] = test_acc
    return df


def table(*frames: pd.DataFrame) -> pd.DataFrame:
    return normalise(pd.concat(frames, ignore_index=True))


# ------------------------------------------------------------------------------------- stats
def test_bootstrap_identical_seeds_zero_width():
    m, lo, hi = S.bootstrap_ci([1.25, 1.25, 1.25])
    assert m == lo == hi == 1.25


def test_bootstrap_single_value_and_empty():
    assert S.bootstrap_ci([2.0])[0] == 2.0 and math.isnan(S.bootstrap_ci([2.0])[1])
    assert all(math.isnan(v) for v in S.bootstrap_ci([]))
    assert S.bootstrap_ci([1.0, np.nan, 1.0]) == (1.0, 1.0, 1.0)  # NaNs dropped


def test_bootstrap_known_behaviour_and_seeded():
    # two values: the resampled means are 0, 0.5, 1 with prob. 1/4, 1/2, 1/4 -> 95% CI = [0, 1]
    m, lo, hi = S.bootstrap_ci([0.0, 1.0], n_boot=4000, seed=3)
    assert (m, lo, hi) == (0.5, 0.0, 1.0)
    x = np.random.default_rng(1).normal(10, 2, size=30)
    a, b = S.bootstrap_ci(x, seed=7), S.bootstrap_ci(x, seed=7)
    assert a == b  # repeatable
    assert a[1] < a[0] < a[2]
    # roughly the normal-theory interval for n=30
    half = 1.96 * x.std(ddof=1) / math.sqrt(30)
    assert abs((a[2] - a[1]) / 2 - half) / half < 0.15
    c = S.bootstrap_ci(x, seed=8)
    assert c != a  # the seed matters


def test_diff_ci_and_welch_match_scipy():
    a, b = [1.0, 1.2, 0.9, 1.1], [1.5, 1.7, 1.6]
    p = S.welch_pvalue(a, b)
    assert p == pytest.approx(st.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    d, lo, hi = S.diff_ci(a, b, seed=0)
    assert d == pytest.approx(np.mean(a) - np.mean(b))
    assert lo <= d <= hi < 0
    assert math.isnan(S.welch_pvalue([1.0], b)) and math.isnan(S.diff_ci([1.0], b)[1])
    assert math.isnan(S.welch_pvalue([1, 1, 1], [2, 2, 2]))  # zero variance: undefined, like scipy


def test_permutation_exact_and_holm():
    # 3 vs 3, complete separation: 2 of the 20 relabellings are as extreme -> p = 0.1
    assert S.permutation_pvalue([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert S.permutation_pvalue([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    x, y = np.arange(12.0), np.arange(12.0) + 3
    r = S.permutation_pvalue(x, y, n_perm=2000, seed=1)
    assert r == S.permutation_pvalue(x, y, n_perm=2000, seed=1)
    assert r == pytest.approx(st.permutation_test((x, y), lambda a, b: np.mean(a) - np.mean(b),
                                                  n_resamples=20000, random_state=0).pvalue, abs=0.03)
    adj = S.holm([0.01, 0.04, np.nan, 0.03])
    assert np.allclose(adj[[0, 1, 3]], [0.03, 0.06, 0.06]) and np.isnan(adj[2])


# ------------------------------------------------------------------------------ gaps / selection
def confirm_table() -> pd.DataFrame:
    frames = []
    for s, off in enumerate((0.0, 0.1, 0.2)):
        frames.append(run_rows("none", s, [1.0, 0.5, 0.3], [2.0 + off, 1.8 + off, 1.9 + off], test_acc=0.4))
        frames.append(run_rows("l2", s, [1.0, 0.6, 0.5], [1.9, 1.5 + off, 1.4 + off], test_acc=0.5))
    # a search trial that must be ignored because confirm runs exist
    frames.append(run_rows("l2", 0, [1.0, 0.6, 0.5], [0.1, 0.1, 0.1], phase="search", tid="s1", l2=1e-4))
    return table(*frames)


def test_gap_final_and_best_epoch():
    df = confirm_table()
    rows, src = A.select_rows(df)
    assert set(src["source"]) == {"confirm"} and "s1" not in set(rows["trial_id"])
    ps = A.per_seed_metrics(rows)
    none0 = ps[(ps["regularizer"] == "none") & (ps["seed"] == 0)].iloc[0]
    assert none0["final_val_loss"] == pytest.approx(1.9)
    assert none0["final_gap_loss"] == pytest.approx(1.9 - 0.3)
    assert none0["best_epoch"] == 2 and none0["best_val_loss"] == pytest.approx(1.8)
    assert none0["best_train_clean_loss"] == pytest.approx(0.5)
    assert none0["final_test_acc"] == pytest.approx(0.4)
    wide = A.gap_summary(ps, src, n_boot=2000)
    w = wide.set_index("regularizer")
    assert w.at["none", "n_seeds"] == 3
    assert w.at["none", "final_gap_loss_mean"] == pytest.approx(np.mean([1.6, 1.7, 1.8]))
    assert w.at["l2", "final_val_loss_mean"] == pytest.approx(1.5)
    # identical seeds -> zero-width CI (test accuracy is the same for every seed)
    assert w.at["l2", "final_test_acc_ci_lo"] == w.at["l2", "final_test_acc_ci_hi"] == pytest.approx(0.5)
    # difference and p-value vs none, against scipy
    l2v, nv = [1.4, 1.5, 1.6], [1.9, 2.0, 2.1]
    assert w.at["l2", "final_val_loss_diff_none"] == pytest.approx(-0.5)
    assert w.at["l2", "final_val_loss_p"] == pytest.approx(st.ttest_ind(l2v, nv, equal_var=False).pvalue)
    assert w.at["l2", "final_val_loss_diff_ci_hi"] < 0
    assert math.isnan(w.at["none", "final_val_loss_p"])
    perm = A.gap_summary(ps, src, test="permutation", n_boot=500).set_index("regularizer")
    assert perm.at["l2", "final_val_loss_p"] == pytest.approx(0.1)  # 3 vs 3, separated: exact 2/20


def test_fallback_to_best_search_trial_warns():
    df = table(
        run_rows("none", 0, [1.0, 0.5], [2.0, 2.1], phase="search", tid="a"),
        run_rows("none", 0, [1.0, 0.5], [1.5, 1.6], phase="search", tid="b"),
        run_rows("none", 0, [1.0], [1.0], phase="search", tid="c", status="stopped", max_epochs=2),
        run_rows("l2", 0, [1.0, 0.7], [1.4, 1.3], phase="search", tid="d", l2=1e-3),
    )
    with pytest.warns(G.AnalysisWarning, match="no completed confirm-phase"):
        rows, src = A.select_rows(df)
    assert set(src["source"]) == {"search-best"} and (src["n_seeds"] == 1).all()
    assert set(rows["trial_id"]) <= {"a", "b", "c", "d"} and "d" in set(rows["trial_id"])
    # One rule for "best", the sweep's (study.trial_table.best_per_regularizer): the lowest
    # validation loss at any epoch, ASHA-stopped trials competing with the epochs they ran.
    from study.trial_table import best_per_regularizer
    assert set(rows["trial_id"]) == set(best_per_regularizer(df)["trial_id"]) == {"c", "d"}
    ps = A.per_seed_metrics(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wide = A.gap_summary(ps, src, n_boot=100).set_index("regularizer")
    assert math.isnan(wide.at["l2", "final_val_loss_ci_lo"]) and math.isnan(wide.at["l2", "final_val_loss_p"])
    assert wide.at["l2", "final_val_loss_diff_none"] == pytest.approx(1.3 - wide.at["none", "final_val_loss_mean"])
    assert "n=1" in wide.at["l2", "note"]


def test_table1_epoch_and_values():
    assert A.table1_epoch(30) == 25 and A.table1_epoch(10) == 10
    long_run = list(np.linspace(3, 1, 30))
    val = list(np.linspace(3, 2, 30))
    df = table(run_rows("none", 0, long_run, val), run_rows("none", 1, long_run, [v + 0.2 for v in val]),
               run_rows("dropout", 0, long_run, val, train=[x + 0.5 for x in long_run]))
    rows, src = A.select_rows(df)
    t1 = A.table1(rows, src, n_boot=500).set_index("regularizer")
    assert t1.at["none", "epoch"] == 25
    assert t1.at["none", "val_loss_mean"] == pytest.approx(val[24] + 0.1)
    assert t1.at["none", "train_clean_loss_mean"] == pytest.approx(long_run[24])
    assert t1.at["dropout", "train_loss_mean"] == pytest.approx(long_run[24] + 0.5)
    assert t1.at["none", "train_clean_loss_ci_lo"] == t1.at["none", "train_clean_loss_ci_hi"]  # identical seeds
    md = A.table1_markdown(t1.reset_index())
    assert "loss at epoch 25" in md and "No regularization" in md and "Dropout" in md
    short = table(run_rows("none", 0, [2.0, 1.0], [2.5, 2.2]))
    t1s = A.table1(*A.select_rows(short))
    assert t1s["epoch"].iloc[0] == 2 and "loss at epoch 2 " in A.table1_markdown(t1s)


def test_budget_accounting():
    frames = []
    for i in range(3):
        frames.append(run_rows("none", 0, [1.0, 0.5], [2.0, 2.1], phase="search", tid=f"n{i}"))
        frames.append(run_rows("l2", 0, [1.0, 0.5][: 1 + (i > 0)], [2.0, 2.1][: 1 + (i > 0)], phase="search",
                               tid=f"l{i}", status="completed" if i else "stopped", max_epochs=2))
    df = table(*frames)
    bt = A.budget_table(df, {"budget_per_regularizer": {"none": 3, "l2": 3}}).set_index("regularizer")
    assert bt.at["none", "search_trials"] == 3 and bt.at["l2", "stopped"] == 1 and bt.at["l2", "completed"] == 2
    assert bt.at["l2", "search_epochs"] == 5 and bt.at["none", "search_epochs"] == 6
    # ASHA's accounting: 3 trials x 2 epochs each could have been trained; l2 trained 5 of 6
    assert bt.at["l2", "full_budget_epochs"] == bt.at["none", "full_budget_epochs"] == 6
    assert bt.at["l2", "epochs_fraction"] == pytest.approx(5 / 6) and bt.at["none", "epochs_fraction"] == 1.0
    assert bt.at["none", "search_time_s"] == pytest.approx(12.0)
    msg = A.budget_statement(bt.reset_index())
    assert msg.startswith("Each regularizer type got the same budget: 3 search trials")
    uneq = table(*frames, run_rows("l2", 0, [1.0], [2.0], phase="search", tid="extra"))
    bt2 = A.budget_table(uneq, {"budget_per_regularizer": {"none": 3, "l2": 3}})
    msg2 = A.budget_statement(bt2)
    assert "different budgets" in msg2 and "l2: 4" in msg2 and "l2 ran 4 of 3 planned" in msg2


def test_asha_figure_shows_trials_stopped_at_the_first_rung():
    from analysis import plots
    search = table(run_rows("none", 0, [1.0, 0.5, 0.4], [2.0, 1.9, 1.8], phase="search", tid="full"),
                   run_rows("l2", 0, [1.0], [2.4], phase="search", tid="rung1", status="stopped", max_epochs=3))
    fig = plots.asha(search, {"search": {"grace_period": 1, "reduction_factor": 2, "max_t": 3}})
    drawn = {(float(x), float(y)) for line in fig.axes[0].lines for x, y in zip(*line.get_data())
             if len(line.get_data()[0])}
    # the one-epoch trial is a single point: without markers it would not be visible at all
    assert (1.0, 2.4) in drawn and (3.0, 1.8) in drawn
    assert all(line.get_marker() not in (None, "None", "") for line in fig.axes[0].lines
               if len(line.get_data()[0]) and line.get_linestyle() == "-")
    assert "1 of 2 search trials stopped early, 4 of 6 possible epochs trained" in fig._suptitle.get_text()


def test_searched_params_and_load_roundtrip(tmp_path):
    df = confirm_table()
    assert searched_params(df) == ["l2"]
    df.to_csv(tmp_path / "trials.csv", index=False)
    back = A.load_trials(tmp_path)
    assert len(back) == len(df) and back["epoch"].dtype.kind == "i"
    with pytest.raises(ValueError, match="required columns"):
        bad = tmp_path / "bad"
        bad.mkdir()
        df.drop(columns=["val_loss"]).to_csv(bad / "trials.csv", index=False)
        A.load_trials(bad)


# ------------------------------------------------------------------------- fixture experiment
@pytest.fixture(scope="module")
def experiment(tmp_path_factory) -> Path:
    return tablegen.make_experiment(tmp_path_factory.mktemp("res") / "fixture_exp")


@pytest.fixture(scope="module")
def reported(experiment):
    from analysis.report import main

    assert main([str(experiment), "--n-boot", "2000"]) == 0
    return experiment / "analysis"


def test_fixture_is_realistic(experiment):
    df = pd.read_parquet(experiment / "trials.parquet")
    assert set(df["phase"]) == {"search", "confirm"}
    assert set(df["status"]) >= {"completed", "stopped", "errored", "diverged"}
    assert sorted(df.loc[df["phase"] == "confirm", "seed"].unique()) == [0, 1, 2]
    assert df.groupby("trial_id")["regularizer"].nunique().max() == 1
    import optuna

    study = optuna.load_study(study_name="fixture_exp", storage=f"sqlite:///{experiment / 'optuna.db'}")
    assert len(study.trials) == 20
    assert {"regularizer", "lr", "l2", "dropout"} <= {p for t in study.trials for p in t.params}


def test_summarize_and_report_write_everything(reported, experiment, capsys):
    out = reported
    for f in ("gaps.csv", "gaps_long.csv", "per_seed.csv", "table1.md", "table1.csv", "budget.csv",
              "budget_curves.csv", "importances.csv", "notes.json", "report.html", "report.md"):
        assert (out / f).stat().st_size > 0, f
    for fig in ("curves", "gaps", "strength", "asha", "budget_curves", "importances"):
        for ext in ("png", "svg"):
            assert (out / "figures" / f"{fig}.{ext}").stat().st_size > 1000, (fig, ext)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "src='figures/" not in html
    md = (out / "report.md").read_text()
    for needle in ("## Setup", "Each regularizer type got the same budget", "Table 1 analogue", "## Conclusion",
                   "NVIDIA H100", "1:02:03", "Seeds:** 0, 1, 2", "![curves](figures/curves.png)",
                   "**Budget curves:** the ranking by expected best validation loss"):
        assert needle in md, needle
    assert re.search(r"Data augmentation gives the lowest validation loss", md)


def test_gaps_csv_matches_table1_and_per_seed(reported):
    gaps = pd.read_csv(reported / "gaps.csv").set_index("regularizer")
    t1 = pd.read_csv(reported / "table1.csv").set_index("regularizer")
    ps = pd.read_csv(reported / "per_seed.csv")
    # the recorded "l2_dropout" appears under its canonical name, in the catalog's report order
    from study.regularizers import canonical, order_key
    from tablegen import REGULARIZERS
    assert list(gaps.index) == sorted({canonical(r) for r in REGULARIZERS}, key=order_key)
    assert list(gaps.index)[0] == "none" and "l2+dropout" in gaps.index
    assert (gaps["source"] == "confirm").all() and (gaps["n_seeds"] == 3).all()
    # fixture max_epochs = 12 < 25: Table 1 is at the final epoch, so it must equal gaps.csv's final values
    assert (t1["epoch"] == 12).all()
    for m in ("train_loss", "train_clean_loss", "val_loss", "gap_loss"):
        for k in ("mean", "ci_lo", "ci_hi"):
            np.testing.assert_allclose(t1[f"{m}_{k}"], gaps.loc[t1.index, f"final_{m}_{k}"], rtol=1e-12)
    means = ps.groupby("regularizer")["final_val_loss"].mean()
    np.testing.assert_allclose(gaps["final_val_loss_mean"], means[gaps.index], rtol=1e-12)
    # the confirmation runs share their seeds: the default test (auto) pairs them by seed
    pair = ps[ps.regularizer == "l2"].merge(ps[ps.regularizer == "none"], on="seed")
    p = st.ttest_rel(pair["final_gap_loss_x"], pair["final_gap_loss_y"]).pvalue
    assert len(pair) == 3 and (gaps["test"] == "paired").all()
    assert gaps.at["l2", "final_gap_loss_p"] == pytest.approx(p)
    md = (reported / "table1.md").read_text()
    assert f"{gaps.at['augment', 'final_val_loss_mean']:.3f}" in md
    # the generated conclusion names the technique with the lowest val loss
    best = gaps["final_val_loss_mean"].idxmin()
    assert technique_label(best) + " gives the lowest validation loss" in (reported / "report.md").read_text()


def test_summary_is_repeatable(experiment, reported, tmp_path):
    from analysis.summarize import summarize

    summarize(experiment, tmp_path / "again", n_boot=2000, figures=False)
    a = pd.read_csv(reported / "gaps.csv")
    b = pd.read_csv(tmp_path / "again" / "gaps.csv")
    pd.testing.assert_frame_equal(a, b)


def test_no_optuna_and_no_confirm(tmp_path):
    from analysis.summarize import summarize

    d = tablegen.make_experiment(tmp_path / "bare", optuna_db=False, confirm=False, n_search=3, max_epochs=6)
    s = summarize(d, n_boot=200, figures=False)
    assert (s.gaps["source"] == "search-best").all() and (s.gaps["n_seeds"] == 1).all()
    assert s.gaps["final_val_loss_ci_lo"].isna().all()
    assert any("no completed confirm-phase" in n for n in s.notes)
    assert s.importances.empty and any("no Optuna study" in n for n in s.notes)
    from analysis.conclude import conclusions

    text = " ".join(conclusions(s.gaps))
    assert "n = 1" in text and "could be tested" in text


# ---------------------------------------------------------------------------- several datasets
PAPER = ("image", "tinyimagenet", "alexnet")  # the original report's setting
OTHER = ("image", "cifar10", "resnet18")
TWO_REGS = ("none", "l2", "dropout")


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory) -> Path:
    """An experiment whose table holds two groups, Tiny ImageNet / AlexNet and CIFAR-10 / ResNet-18,
    analysed and reported; the analysis directory."""
    d = tablegen.make_experiment(tmp_path_factory.mktemp("two") / "two", optuna_db=False, regularizers=TWO_REGS,
                                 n_search=3, max_epochs=6)
    other, _ = tablegen.make_trials("c10", regularizers=TWO_REGS, n_search=3, max_epochs=6, dataset="cifar10",
                                    model="resnet18", seed=1)
    table = pd.concat([pd.read_parquet(d / "trials.parquet"), other], ignore_index=True)
    table.to_parquet(d / "trials.parquet", index=False)
    from analysis.report import main

    assert main([str(d), "--n-boot", "200"]) == 0
    return d / "analysis"


def test_two_datasets_are_summarised_apart(two_datasets):
    from analysis.groups import GROUP_KEYS

    out = two_datasets
    gaps = pd.read_csv(out / "gaps.csv")
    ps = pd.read_csv(out / "per_seed.csv")
    long = pd.read_csv(out / "gaps_long.csv")
    assert set(map(tuple, gaps[GROUP_KEYS].to_numpy())) == {PAPER, OTHER} and len(gaps) == 6
    assert (gaps["source"] == "confirm").all() and (gaps["n_seeds"] == 3).all()
    for key, g in gaps.groupby(GROUP_KEYS):
        g = g.set_index("regularizer")
        mine = ps[(ps["dataset"] == key[1]) & (ps["model"] == key[2])]
        assert len(mine) == 9  # 3 techniques x 3 seeds, of this group only
        means = mine.groupby("regularizer")["final_val_loss"].mean()
        np.testing.assert_allclose(g["final_val_loss_mean"], means[g.index], rtol=1e-12)
        # each group's techniques are tested against that group's `none`, Holm across that group
        # (paired by seed within the group: the default test, since every technique ran its seeds)
        l2, none = (mine.loc[mine["regularizer"] == r].set_index("seed")["final_val_loss"].sort_index()
                    for r in ("l2", "none"))
        assert g.at["l2", "final_val_loss_p"] == pytest.approx(st.ttest_rel(l2, none).pvalue)
        sub = long[(long["dataset"] == key[1]) & (long["metric"] == "final_val_loss")]
        np.testing.assert_allclose(sub["p_holm"], S.holm(sub["p_value"]), rtol=1e-12)
    budget = pd.read_csv(out / "budget.csv")
    assert sorted(budget.groupby("dataset")["search_trials"].sum().items()) == [("cifar10", 9), ("tinyimagenet", 9)]
    md = (out / "report.md").read_text()
    for title in ("image / cifar10 / resnet18", "image / tinyimagenet / alexnet"):  # (not 6 per type: 3 in each)
        assert f"{title}: Each regularizer type got the same budget: 3 search trials per type (3 types)." in md


def test_paper_values_only_for_tiny_imagenet_alexnet(two_datasets):
    from study.regularizers import seed_table1

    out = two_datasets
    t1 = pd.read_csv(out / "table1.csv")
    tiny = t1[t1["dataset"] == "tinyimagenet"].set_index("regularizer")
    for reg in TWO_REGS:
        assert (tiny.at[reg, "paper_train_loss"], tiny.at[reg, "paper_val_loss"]) == seed_table1(reg)
    assert t1.loc[t1["dataset"] == "cifar10", ["paper_train_loss", "paper_val_loss"]].isna().all().all()
    blocks = dict(b.split(":", 1) for b in (out / "table1.md").read_text().split("### Table 1 analogue — ")[1:])
    assert sorted(blocks) == ["image / cifar10 / resnet18", "image / tinyimagenet / alexnet"]
    assert blocks["image / tinyimagenet / alexnet"].startswith(
        " loss at epoch 6 (= min(25, max_epochs); the study used epoch 25)\n")
    assert blocks["image / cifar10 / resnet18"].startswith(" loss at epoch 6 (= min(25, max_epochs))\n")
    assert "Paper" in blocks["image / tinyimagenet / alexnet"] and "Paper" not in blocks["image / cifar10 / resnet18"]
    assert (out / "report.html").read_text().count("Paper train / val loss") == 1
    # the report compares with the original study in its setting only
    md = (out / "report.md").read_text()
    study_lines = [ln for ln in md.splitlines() if "original study" in ln or "study used" in ln]
    assert study_lines and all(ln.startswith(("- **image / tinyimagenet / alexnet:**", "### Table 1 analogue — "
                                              "image / tinyimagenet / alexnet")) for ln in study_lines), study_lines


def test_report_and_figures_per_dataset(two_datasets):
    out = two_datasets
    slugs = ("image_cifar10_resnet18", "image_tinyimagenet_alexnet")
    figures = {f"{f}_{g}" for f in ("curves", "gaps", "strength", "asha", "budget_curves") for g in slugs}
    assert {p.stem for p in (out / "figures").glob("*.png")} == figures  # (no Optuna study: no importances)
    assert set(json.loads((out / "notes.json").read_text())["figures"]) == figures
    md = (out / "report.md").read_text()
    setup = next(ln for ln in md.splitlines() if ln.startswith("- **Task / dataset / model:**"))
    assert "image / cifar10 / resnet18" in setup and "image / tinyimagenet / alexnet" in setup
    gap_section = md[md.index("## Gap summary"):md.index("## Conclusion")]
    assert [ln for ln in gap_section.splitlines() if ln.startswith("### ")] == [
        "### image / cifar10 / resnet18", "### image / tinyimagenet / alexnet"]
    conclusion = md[md.index("## Conclusion"):md.index("## Figures")]
    for title in ("image / cifar10 / resnet18", "image / tinyimagenet / alexnet"):
        assert f"- **{title}:** " in conclusion
    for name in figures:
        assert f"![{name}](figures/{name}.png)" in md
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert "<h3>image / cifar10 / resnet18: loss at epoch 6 (= min(25, max_epochs))</h3>" in html


def test_group_names():
    from analysis.groups import shows_paper, slug, title

    assert title(("image", "cifar10", "tv:resnet50")) == "image / cifar10 / tv:resnet50"
    assert slug(("image", "cifar10", "tv:resnet50")) == "image_cifar10_tv-resnet50"  # (a file name)
    assert title(("?", "?", "alexnet")) == "alexnet"
    assert shows_paper(PAPER) and shows_paper((*PAPER, "l2"))
    assert not shows_paper(("image", "tinyimagenet", "efficientnet_b0")) and not shows_paper(OTHER)


def test_a_table_without_the_dataset_column_gets_it_by_the_rule(tmp_path):
    """Tables written before the column: the image dataset or corpus from the row's config JSON,
    else the only data there was then (Tiny ImageNet; the treebank)."""
    from study.trial_table import keep_lost_trials

    image, _ = tablegen.make_trials("old", regularizers=("none", "l2"), n_search=1, confirm=False, failures=False,
                                    max_epochs=2)
    pos, _ = tablegen.make_trials("oldpos", regularizers=("none", "l2"), n_search=1, confirm=False,
                                  failures=False, max_epochs=2, task="pos", model="rnn")
    old = pd.concat([image, pos], ignore_index=True).drop(columns="dataset")
    recorded = {  # trial -> the data setting in its config JSON (None: absent, as the old code wrote it)
        "old_00000": ("dataset", None), "old_00001": ("dataset", "cifar10"),
        "oldpos_00000": ("corpus", None), "oldpos_00001": ("corpus", "conll2000")}
    for tid, (k, v) in recorded.items():
        cfg = json.loads(old.loc[old["trial_id"] == tid, "config"].iloc[0])
        cfg.pop(k, None)
        if v is not None:
            cfg[k] = v
        old.loc[old["trial_id"] == tid, "config"] = json.dumps(cfg)
    want = {"old_00000": "tinyimagenet", "old_00001": "cifar10", "oldpos_00000": "treebank",
            "oldpos_00001": "conll2000"}
    for name in ("trials.parquet", "trials.csv"):
        d = tmp_path / name.split(".")[1]
        d.mkdir()
        (old.to_parquet if name.endswith("parquet") else old.to_csv)(d / name, index=False)
        back = A.load_trials(d)
        assert back.groupby("trial_id")["dataset"].unique().map(list).to_dict() == {k: [v] for k, v in want.items()}
    # a refresh that keeps lost trials of an old table (their directories gone) fills theirs too
    new = image[image["trial_id"] == "old_00000"]
    kept = keep_lost_trials(new, old, {"search": None})
    assert kept.groupby("trial_id")["dataset"].first().to_dict() == want
    assert list(kept.columns).index("dataset") == list(kept.columns).index("task") + 1


# ---------------------------------------------------------------------------------- notebooks
@pytest.mark.parametrize("name", ["gap_analysis", "explore_sweep"])
def test_notebook_runs(name, experiment, reported):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "analysis" / "notebooks" / f"{name}.ipynb", as_version=4)
    assert any('os.environ.get("REGSTUDY_RESULTS"' in c.source for c in nb.cells)
    os.environ["REGSTUDY_RESULTS"] = str(experiment)
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT / "analysis" / "notebooks")}}).execute()
    finally:
        os.environ.pop("REGSTUDY_RESULTS", None)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
