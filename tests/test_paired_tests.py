"""Paired tests against the baseline (``--test paired`` / ``--test wilcoxon``): runs matched by
seed, p-values equal to scipy's on the per-seed differences, a paired bootstrap CI, Holm across
techniques, the test named in gaps.csv and the report."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

import tablegen
from analysis import gaps as G
from analysis import stats as S
from analysis.summarize import summarize


def test_paired_statistics_equal_scipys():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.3, 7), rng.normal(0.8, 0.3, 7)
    assert S.paired_t_pvalue(a, b) == pytest.approx(st.ttest_rel(a, b).pvalue)
    assert S.wilcoxon_pvalue(a, b) == pytest.approx(st.wilcoxon(a - b).pvalue)
    mean, lo, hi = S.paired_diff_ci(a, b, n_boot=2000)
    assert mean == pytest.approx(float(np.mean(a - b))) and lo < mean < hi
    assert np.isnan(S.paired_t_pvalue([1.0], [2.0])) and np.isnan(S.wilcoxon_pvalue([1.0, 2.0], [1.0, 2.0]))


def per_seed(reg: str, seeds: list[int], values: list[float]) -> list[dict]:
    return [{"task": "image", "dataset": "tinyimagenet", "model": "alexnet", "regularizer": reg, "seed": s,
             "trial_id": f"{reg}-{s}", "final_val_loss": v} for s, v in zip(seeds, values)]


def test_gap_summary_pairs_runs_by_seed():
    """Rows in shuffled order: the pairs are made by seed. A technique with a repeated seed gets
    no paired test; Holm runs over the techniques that have one."""
    none = per_seed("none", [1, 2, 3, 4, 5], [2.0, 2.4, 1.9, 2.2, 2.6])
    l2 = per_seed("l2", [5, 3, 1, 4, 2], [2.3, 1.7, 1.8, 2.1, 2.15])
    drop = per_seed("dropout", [1, 2, 3, 4, 5], [1.5, 2.0, 1.6, 1.6, 2.0])
    odd = per_seed("mixup", [1, 1, 2], [1.0, 1.1, 1.2])
    ps = pd.DataFrame(none + l2 + drop + odd).sample(frac=1.0, random_state=1)
    for test, scipy_p in (("paired", lambda x, y: st.ttest_rel(x, y).pvalue),
                          ("wilcoxon", lambda x, y: st.wilcoxon(x - y).pvalue)):
        long = G.gap_summary_long(ps, test=test, n_boot=500).set_index("regularizer")
        base = np.array([2.0, 2.4, 1.9, 2.2, 2.6])  # seeds 1..5
        l2_by_seed = np.array([1.8, 2.15, 1.7, 2.1, 2.3])
        drop_by_seed = np.array([1.5, 2.0, 1.6, 1.6, 2.0])
        p_l2, p_drop = scipy_p(l2_by_seed, base), scipy_p(drop_by_seed, base)
        assert long.loc["l2", "p_value"] == pytest.approx(p_l2) and long.loc["l2", "n_pairs"] == 5
        assert long.loc["dropout", "p_value"] == pytest.approx(p_drop)
        assert long.loc["l2", "diff_none"] == pytest.approx(float(np.mean(l2_by_seed - base)))
        assert np.isnan(long.loc["mixup", "p_value"]) and long.loc["mixup", "n_pairs"] == 0
        assert sorted(long[["p_holm"]].dropna().p_holm) == pytest.approx(sorted(S.holm([p_l2, p_drop])))
        assert set(long.test) == {test}


def test_summarize_names_the_paired_design(tmp_path):
    d = tablegen.make_experiment(tmp_path / "exp")
    s = summarize(d, test="wilcoxon", n_boot=200, figures=False)
    assert set(pd.read_csv(d / "analysis" / "gaps.csv").test) == {"wilcoxon"}
    assert s.settings["test"] == "wilcoxon"
    from analysis.report import build, to_markdown
    assert "Wilcoxon signed-rank test (paired design: runs matched by seed)" in to_markdown(build(s))


def test_the_default_test_follows_the_design():
    """--test auto: paired when every technique ran the baseline's seeds, else Welch, saying why."""
    none = per_seed("none", [1, 2, 3], [2.0, 2.4, 1.9])
    same = per_seed("l2", [3, 1, 2], [1.7, 1.8, 2.15])
    assert G.design_test(pd.DataFrame(none + same))[0] == "paired"
    other = per_seed("l2", [4, 5, 6], [1.7, 1.8, 2.15])
    test, why = G.design_test(pd.DataFrame(none + other))
    assert test == "welch" and "L2 regularization (seeds 4, 5, 6)" in why
    assert G.design_test(pd.DataFrame(per_seed("none", [1], [2.0]) + per_seed("l2", [1], [1.0])))[0] == "welch"


def test_summarize_defaults_to_the_paired_test_for_shared_seeds(tmp_path):
    d = tablegen.make_experiment(tmp_path / "exp")
    s = summarize(d, n_boot=200, figures=False)
    assert s.settings["test"] == "paired" and s.settings["test_asked"] == "auto"
    assert any(n.startswith("test: paired t-test (--test auto: every technique ran the same seeds") for n in s.notes)
    assert set(pd.read_csv(d / "analysis" / "gaps.csv").test) == {"paired"}
