"""A fair comparison (study.comparison) on a real local Ray cluster: every technique gets exactly
its trials, ASHA decides within a technique only, the confirmation seeds are the same for every
technique and the analysis pairs them; a grid space runs every configuration x seed once; an
interrupted comparison resumes with its equal budgets. The dispatchers' logic is also checked
on its own, against Ray's ASHA and Optuna's TPE as they are."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import ray
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher
from scipy import stats as st

from posgen import make_nltk_data
from procs import wait_for
from study import comparison
from study.run import main
from study.trial_table import read_trial_rows

N = 3  # search trials per technique
MAX_T = 4  # ASHA rungs at epochs 1, 2 (and max_t)
SPACE = f"""
description: two techniques, the second far worse (an L2 coefficient of 10-30)
fixed: {{task: pos, model: rnn, corpus: treebank, tagset: universal, epochs: {MAX_T}, batch_size: 8,
        hidden: 16, embed_dim: 16}}
search:
  lr: {{dist: loguniform, low: 3.0e-3, high: 1.0e-2}}
compare:
  l2: {{l2: {{dist: loguniform, low: 10.0, high: 30.0}}}}
sweep: {{trials_per_technique: {N}, grace_period: 1, reduction_factor: 2, seed: 0}}
"""
GRID = """
description: two fixed configurations
fixed: {task: pos, model: rnn, corpus: treebank, tagset: universal, epochs: 2, batch_size: 8, hidden: 16,
        embed_dim: 16, lr: 5.0e-3}
grid:
  - {regularizer: none}
  - {regularizer: l2+dropout, l2: 1.0e-4, dropout: 0.3}
sweep: {seeds: 2}
"""


@pytest.fixture(scope="module")
def nd(tmp_path_factory) -> Path:
    return make_nltk_data(tmp_path_factory.mktemp("nd") / "nltk_data", "treebank", n=60)


@pytest.fixture(scope="module")
def spaces(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("spaces")
    (d / "fair.yaml").write_text(SPACE)
    (d / "fixed.yaml").write_text(GRID)
    return d


def trials_of(exp: Path) -> pd.DataFrame:
    """One row per search trial, in the order they started: technique, epochs, first report time."""
    recs = []
    for d in sorted((exp / "ray" / "search").glob("trial_*")):
        rows = read_trial_rows(d)
        recs.append({"dir": d.name, "technique": rows[-1]["config"]["regularizer"], "epochs": len(rows),
                     "started": rows[0]["trial_started_at"],
                     "val_loss": [r["val_loss"] for r in rows],
                     "reported_at": [r["reported_at"] for r in rows]})
    return pd.DataFrame(recs).sort_values("started", kind="stable").reset_index(drop=True)


class _Trial:
    def __init__(self, trial_id: str):
        self.trial_id = trial_id


def replay_asha(runs: pd.DataFrame) -> list[int]:
    """The epochs Ray's ASHA allows each run when it sees only these runs' results, in the order
    they were reported (one trial at a time)."""
    sched = comparison.asha("val_loss", "min", MAX_T, 1, 2)
    reached = []
    for i, r in runs.iterrows():
        t = _Trial(str(i))
        sched.on_trial_add(None, t)
        epochs = 0
        for epoch, v in enumerate(r["val_loss"], start=1):
            epochs = epoch
            if sched.on_trial_result(None, t, {"training_iteration": epoch, "val_loss": v}) == TrialScheduler.STOP:
                break
        sched.on_trial_complete(None, t, {"training_iteration": epochs, "val_loss": r["val_loss"][epochs - 1]})
        reached.append(epochs)
    return reached


def test_equal_budgets_asha_within_technique_and_paired_confirmation(cluster, nd, spaces, tmp_path, capsys):
    results = tmp_path / "results"
    rc = main(["--space", str(spaces / "fair.yaml"), "--nltk-data", str(nd), "--name", "fair",
               "--results-dir", str(results), "--max-concurrent", "1", "--confirm-seeds", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    exp = results / "fair"
    assert f"{N} search trials per technique x 2 techniques (none, l2)" in out
    runs = trials_of(exp)
    # every technique exactly N trials, and the techniques take turns
    assert runs["technique"].value_counts().to_dict() == {"none": N, "l2": N}
    assert list(runs["technique"]) == ["none", "l2"] * N
    # one Optuna study per technique, each with its own N trials
    storage = optuna.storages.RDBStorage(f"sqlite:///{exp / 'optuna.db'}")
    for tech in ("none", "l2"):
        study = optuna.load_study(study_name=f"fair:{tech}", storage=storage)
        assert len(study.trials) == N and all(t.state.is_finished() for t in study.trials)
        assert ("l2" in study.trials[0].params) == (tech == "l2") and "regularizer" not in study.trials[0].params
    # l2's trials are all far worse than none's, at every epoch ...
    best = {tech: [min(v) for v in g["val_loss"]] for tech, g in runs.groupby("technique")}
    first = [v[0] for v in runs[runs.technique == "none"]["val_loss"]]
    assert min(best["l2"]) > max(first) + 0.05, (best, first)
    # ... yet l2's first trial trains the full budget (a single ASHA would have stopped it at epoch
    # 1, behind none's first trial), and each trial gets exactly what its own technique's ASHA
    # allows given its technique's results alone
    for tech, g in runs.groupby("technique", sort=False):
        assert list(g["epochs"]) == replay_asha(g.reset_index(drop=True)), (tech, list(g["epochs"]))
    assert runs[runs.technique == "l2"]["epochs"].iloc[0] == MAX_T
    cross = replay_asha(runs)  # (the same results through one ASHA: the control)
    assert cross[1] == 1  # l2's first trial would have been stopped at epoch 1
    meta = json.loads((exp / "experiment.json").read_text())
    assert meta["search"]["trials_per_technique"] == N and meta["budget_per_regularizer"] == {"none": N, "l2": N}
    assert meta["optuna_studies"] == ["fair:none", "fair:l2"] and meta["paired_seeds"] is True
    assert meta["search"]["tpe_startup_trials"] == comparison.startup_trials(N) == 1

    # the confirmation: the same seeds for both techniques, and the analysis pairs them
    table = pd.read_parquet(exp / "trials.parquet")
    conf = table[table.phase == "confirm"]
    seeds = conf.groupby("regularizer")["seed"].apply(lambda s: sorted(set(s))).to_dict()
    assert seeds == {"none": [1, 2, 3], "l2": [1, 2, 3]}
    from analysis.report import setup_items
    from analysis.summarize import summarize
    s = summarize(exp, n_boot=200, figures=False)
    assert s.settings["test"] == "paired" and any("paired by seed" in n for n in s.notes)
    last = conf.sort_values("epoch").groupby("trial_id").tail(1)
    by = {r: g.set_index("seed")["val_loss"].sort_index() for r, g in last.groupby("regularizer")}
    row = s.gaps.set_index("regularizer").loc["l2"]
    assert row["test"] == "paired"
    assert row["final_val_loss_p"] == pytest.approx(st.ttest_rel(by["l2"], by["none"]).pvalue, rel=1e-9)
    assert row["final_val_loss_diff_none"] == pytest.approx(float((by["l2"] - by["none"]).mean()))
    setup = dict(setup_items(s))
    assert setup["Budget"].startswith("Each regularizer type got the same budget: 3 search trials per type")
    assert setup["Design"].startswith("Comparison by construction: every technique got exactly 3 search trials")


def test_grid_runs_every_configuration_and_seed_once(cluster, nd, spaces, tmp_path, capsys):
    results = tmp_path / "results"
    rc = main(["--space", str(spaces / "fixed.yaml"), "--nltk-data", str(nd), "--name", "g",
               "--results-dir", str(results)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "2 fixed configurations x 2 seeds, no search" in out
    exp = results / "g"
    assert not (exp / "ray" / "search").exists() and not (exp / "optuna.db").exists()
    table = pd.read_parquet(exp / "trials.parquet")
    assert set(table.phase) == {"confirm"} and set(table.status) == {"completed"}
    runs = table.groupby("trial_id").agg(reg=("regularizer", "first"), seed=("seed", "first"),
                                         epochs=("epoch", "max"), l2=("l2", "first"), dropout=("dropout", "first"))
    assert sorted(zip(runs.reg, runs.seed)) == [("l2+dropout", 1), ("l2+dropout", 2), ("none", 1), ("none", 2)]
    assert set(runs.epochs) == {2} and not table.duplicated(["trial_id", "epoch"]).any()
    ens = runs[runs.reg == "l2+dropout"]
    assert set(ens.l2) == {1.0e-4} and set(ens.dropout) == {0.3}
    meta = json.loads((exp / "experiment.json").read_text())
    assert meta["confirm"]["source"] == "grid" and meta["confirm"]["seeds"] == [1, 2]
    # --resume goes through the same machinery: the finished grid stays as it is; other seeds are refused
    resume = ["--name", "g", "--results-dir", str(results), "--nltk-data", str(nd), "--resume"]
    assert main(resume) == 0
    again = pd.read_parquet(exp / "trials.parquet")
    assert sorted(again.trial_id.unique()) == sorted(table.trial_id.unique()) and len(again) == len(table)
    assert main(resume + ["--seeds", "3"]) == 2
    assert "--seeds 3: experiment 'g' was run with 2 seeds" in capsys.readouterr().err
    # a grid searches nothing: the search options are refused
    assert main(["--space", str(spaces / "fixed.yaml"), "--nltk-data", str(nd), "--name", "g2",
                 "--results-dir", str(results), "--num-samples", "3"]) == 2
    assert "--num-samples: not for space 'fixed' (a grid space)" in capsys.readouterr().err


def test_interrupted_comparison_resumes_with_equal_budgets(cluster, nd, spaces, tmp_path, capsys):
    """The driver is stopped (SIGINT) while the second round of trials runs; --resume gives
    every technique exactly its N trials, none twice."""
    results = tmp_path / "results"
    exp = results / "r"
    args = ["--space", str(spaces / "fair.yaml"), "--nltk-data", str(nd), "--name", "r",
            "--results-dir", str(results), "--max-concurrent", "1", "--num-cpus", "1",
            "--grace-period", str(MAX_T), "--no-dashboard", "--table-refresh-s", "0"]
    env = {**os.environ, "REGSTUDY_FAULT": "sleep@0.5"}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    log = tmp_path / "driver.log"
    started = lambda: len(list((exp / "ray" / "search").glob("trial_*")))  # noqa: E731
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "study.run", *args], env=env, start_new_session=True,
                                stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for(proc, log, lambda: started() >= 3, "the third trial")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 130, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = trials_of(exp)
    assert len(before) < 2 * N
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    runs = trials_of(exp)
    assert runs["technique"].value_counts().to_dict() == {"none": N, "l2": N}
    assert set(before["dir"]) <= set(runs["dir"]) and set(runs["epochs"]) == {MAX_T}  # (no early stops)
    table = pd.read_parquet(exp / "trials.parquet")
    assert table.trial_id.nunique() == 2 * N and not table.duplicated(["trial_id", "epoch"]).any()
    storage = optuna.storages.RDBStorage(f"sqlite:///{exp / 'optuna.db'}")
    for tech in ("none", "l2"):
        done = [t for t in optuna.load_study(study_name=f"r:{tech}", storage=storage).trials
                if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == N
    # a changed budget is refused on resume
    assert main(args + ["--resume", "--trials-per-technique", "5"]) == 2
    assert "trials_per_technique=3" in capsys.readouterr().err


# --- the dispatchers on their own ---------------------------------------------------------------

class _Echo(Searcher):
    """A searcher that suggests its name and records what it is told."""

    def __init__(self, name: str):
        super().__init__(metric="val_loss", mode="min")
        self.name, self.told = name, []

    def suggest(self, trial_id):
        return {"who": self.name}

    def on_trial_result(self, trial_id, result):
        self.told.append(("result", trial_id))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.told.append(("complete", trial_id))


def test_technique_search_round_robin_exact_budget_and_restore(tmp_path):
    s = comparison.TechniqueSearch({"none": _Echo("none"), "l2": _Echo("l2"), "mixup": _Echo("mixup")},
                                   trials_per_technique=2, metric="val_loss", mode="min")
    got = [s.suggest(f"t{i}") for i in range(6)]
    assert [g["regularizer"] for g in got] == ["none", "l2", "mixup"] * 2
    assert all(g["who"] == g["regularizer"] for g in got)
    assert s.suggest("t6") == Searcher.FINISHED
    s.on_trial_result("t1", {"val_loss": 1.0})
    s.on_trial_complete("t4", {"val_loss": 1.0})
    assert s.by_technique["l2"].told == [("result", "t1"), ("complete", "t4")] and not s.by_technique["none"].told
    # saved after three suggestions, restored into a fresh one: the counts go on
    s2 = comparison.TechniqueSearch({t: _Echo(t) for t in ("none", "l2", "mixup")}, 2, "val_loss", "min")
    for i in range(3):
        s2.suggest(f"u{i}")
    s2.save(str(tmp_path / "s.pkl"))
    s3 = comparison.TechniqueSearch({t: _Echo(t) for t in ("none", "l2", "mixup")}, 2, "val_loss", "min")
    s3.restore(str(tmp_path / "s.pkl"))
    assert s3.counts() == {"none": 1, "l2": 1, "mixup": 1}
    assert [s3.suggest(f"v{i}")["regularizer"] for i in range(3)] == ["none", "l2", "mixup"]
    assert s3.suggest("v9") == Searcher.FINISHED


def test_tpe_leaves_random_search_within_a_techniques_budget():
    assert [comparison.startup_trials(n) for n in (1, 3, 8, 12, 20, 40)] == [1, 1, 4, 6, 10, 10]


def _suggested(space, s, n: int) -> list[dict]:
    """n configurations from the sweep's own searcher, each completed at once (loss = lr)."""
    from study import sweep

    searcher, _ = sweep._search_algorithms(s, space, max_t=2)
    out = []
    for i in range(n):
        cfg = searcher.suggest(f"t{i}")
        searcher.on_trial_complete(f"t{i}", {"val_loss": cfg["lr"], "training_iteration": 2})
        out.append(cfg)
    return out


@pytest.mark.parametrize("old_record, random_first", [(False, 4), (True, 8)])
def test_a_search_spaces_tpe_leaves_random_search_after_half_its_budget(tmp_path, old_record, random_first):
    # TPE's start-up trials are its own RandomSampler's draws (same seed): the first 4 of an
    # 8-trial search are those, the 5th is TPE's. An experiment recorded before the rule
    # (tpe_startup_trials absent: Optuna's 10) keeps drawing at random.
    from study import sweep
    from study.spaces import define_by_run, load_space

    space = load_space("l2")
    assert sweep.recorded_startup_trials({}) is None and sweep.recorded_startup_trials({"seed": 0}) == 10
    s = sweep.SweepSettings(name="x", results_dir=tmp_path, num_samples=8, seed=0,
                            tpe_startup_trials=sweep.recorded_startup_trials({"seed": 0} if old_record else {}))
    assert s.startup_trials() == (10 if old_record else 4)
    (tmp_path / "x").mkdir()
    got = _suggested(space, s, 8)
    random = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = []
    for _ in range(8):
        t = random.ask()
        define_by_run(space.search, t)
        draws.append(t.params)
        random.tell(t, t.params["lr"])
    same = [all(g[k] == pytest.approx(v) for k, v in d.items()) for g, d in zip(got, draws)]
    assert same[:random_first] == [True] * random_first
    assert not any(same[random_first:])


class _Cfg:
    def __init__(self, trial_id: str, technique: str):
        self.trial_id, self.config = trial_id, {"regularizer": technique}


def _reach(sched, events) -> dict[str, int]:
    """The epochs each trial reaches under ``sched``, one trial at a time, its loss flat over epochs."""
    reach = {}
    for t, v in events:
        sched.on_trial_add(None, t)
        for epoch in range(1, 9):
            reach[t.trial_id] = epoch
            if sched.on_trial_result(None, t, {"training_iteration": epoch, "val_loss": v}) == TrialScheduler.STOP:
                break
        sched.on_trial_complete(None, t, {"training_iteration": reach[t.trial_id], "val_loss": v})
    return reach


def test_technique_asha_never_compares_across_techniques():
    """Technique b's results are all far worse than a's: one ASHA per technique treats each
    technique's trials as if they were alone (b's first trial runs the full budget); a single
    ASHA stops every b trial at the first rung."""
    rng = np.random.default_rng(0)
    events = [(_Cfg(f"{tech}{i}", tech), base + rng.uniform(0, 1))
              for i in range(6) for tech, base in (("a", 1.0), ("b", 10.0))]
    make = lambda: comparison.asha("val_loss", "min", 8, 1, 2)  # noqa: E731
    per = comparison.TechniqueASHA(["a", "b"], make)
    assert per.set_search_properties(None, None)
    reach = _reach(per, events)
    for tech in ("a", "b"):
        mine = [(t, v) for t, v in events if t.config["regularizer"] == tech]
        assert {t.trial_id: reach[t.trial_id] for t, _ in mine} == _reach(make(), mine)
    assert reach["b0"] == 8 and reach["a0"] == 8
    assert len(set(reach.values())) > 1  # (ASHA did stop some trials within each technique)
    single = _reach(make(), events)
    assert max(single[f"b{i}"] for i in range(6)) == 1
