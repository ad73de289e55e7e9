"""An experiment recorded before the regularizer catalog (commit 04efc63, an interrupted POS sweep
whose space names `l2_dropout`; see tests/fixtures/legacy_pos_experiment/README.md) still
resumes to completion and analyses with today's code."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import ray

from posgen import make_nltk_data
from study.run import main

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_pos_experiment" / "legacy"
# Ray Tune's pickled experiment state (tuner.pkl: the Optuna searcher's storage URL, the table
# callback's results dir) holds the absolute path the experiment was recorded at, so the test
# resumes it there. (Moving an experiment is a separate matter: the recorded path is Tune's.)
RECORDED = Path("/tmp/legacyfx/results-orig")


@pytest.fixture()
def legacy(tmp_path):
    shutil.rmtree(RECORDED.parent, ignore_errors=True)
    shutil.copytree(FIXTURE, RECORDED / "legacy")
    os.environ["REGSTUDY_OFFLINE"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield RECORDED / "legacy"
    ray.shutdown()
    shutil.rmtree(RECORDED.parent, ignore_errors=True)


def test_recorded_experiment_resumes_and_analyses(legacy, tmp_path):
    before = pd.read_parquet(legacy / "trials.parquet")
    assert set(before.status) == {"completed", "stopped", "interrupted"} and before.trial_id.nunique() == 3
    nltk_dir = make_nltk_data(tmp_path / "nltk", "treebank", n=60)  # the recorded corpus, regenerated

    rc = main(["--resume", "--name", "legacy", "--results-dir", str(RECORDED), "--nltk-data", str(nltk_dir)])
    assert rc == 0
    after = pd.read_parquet(legacy / "trials.parquet")
    trials = after.sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")
    assert len(trials) == 4 and set(trials.status) <= {"completed", "stopped"}
    assert not after.duplicated(["trial_id", "epoch"]).any()
    assert set(trials.regularizer) <= {"none", "l2", "dropout", "l2+dropout"}  # canonical names
    # the trials that had finished keep their recorded numbers, epoch for epoch
    done = before[before.status.isin(["completed", "stopped"])]
    kept = after.set_index(["trial_id", "epoch"]).loc[list(zip(done.trial_id, done.epoch))]
    assert kept.val_loss.tolist() == pytest.approx(done.val_loss.tolist(), rel=0, abs=0)
    # the interrupted trial (l2) ran to the end of its budget from its checkpoint
    l2 = after[after.trial_id == before[before.status == "interrupted"].trial_id.iloc[0]]
    assert l2.epoch.max() == 3 and (l2.l2 > 0).all() and l2.regularizer.eq("l2").all()
    meta = json.loads((legacy / "experiment.json").read_text())
    assert len(meta["commands"]) == 2

    from analysis.summarize import main as summarize
    assert summarize([str(legacy), "--n-boot", "200"]) == 0
    gaps = pd.read_csv(legacy / "analysis" / "gaps.csv")
    assert set(gaps.regularizer) == set(trials.regularizer) and "none" in set(gaps.regularizer)
