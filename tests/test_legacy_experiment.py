"""An experiment recorded before the regularizer catalog (by commit 04efc63, regenerated from the
repository's history by tests/legacygen.py: an interrupted POS sweep whose space names
`l2_dropout`) still resumes to completion and analyses with today's code."""
from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
import ray

from posgen import make_nltk_data
from study.run import main


@pytest.fixture()
def legacy(legacy_experiment, tmp_path):
    """The recorded experiment, resumed where it was recorded (Tune's state names that path);
    put back as recorded afterwards for the other tests."""
    exp, nltk_dir = legacy_experiment
    backup = tmp_path / "backup"
    shutil.copytree(exp, backup)
    os.environ["REGSTUDY_OFFLINE"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield exp, nltk_dir
    ray.shutdown()
    shutil.rmtree(exp)
    shutil.move(backup, exp)


def test_recorded_experiment_resumes_and_analyses(legacy):
    exp, nltk_dir = legacy
    before = pd.read_parquet(exp / "trials.parquet")
    assert "interrupted" in set(before.status) and before.trial_id.nunique() == 3
    assert "dataset" not in before.columns  # (the table had no such column then)

    rc = main(["--resume", "--name", "legacy", "--results-dir", str(exp.parent), "--nltk-data", str(nltk_dir)])
    assert rc == 0
    after = pd.read_parquet(exp / "trials.parquet")
    trials = after.sort_values("epoch").groupby("trial_id").tail(1).set_index("trial_id")
    assert len(trials) == 4 and set(trials.status) <= {"completed", "stopped"}
    assert not after.duplicated(["trial_id", "epoch"]).any()
    assert set(trials.regularizer) <= {"none", "l2", "dropout", "l2+dropout"}  # canonical names
    assert set(after.dataset) == {"treebank"}  # the corpus, for every trial, the recorded ones too
    # the trials that had finished keep their recorded numbers, epoch for epoch
    done = before[before.status.isin(["completed", "stopped"])]
    kept = after.set_index(["trial_id", "epoch"]).loc[list(zip(done.trial_id, done.epoch))]
    assert kept.val_loss.tolist() == done.val_loss.tolist()
    # the interrupted trial ran to the end of its budget (or its rung) from its checkpoint
    tid = before[before.status == "interrupted"].trial_id.iloc[0]
    assert trials.loc[tid, "status"] in ("completed", "stopped")
    assert after[after.trial_id == tid].epoch.max() > before[before.trial_id == tid].epoch.max() or \
        trials.loc[tid, "status"] == "stopped"
    meta = json.loads((exp / "experiment.json").read_text())
    assert len(meta["commands"]) == 2

    from analysis.summarize import main as summarize
    assert summarize([str(exp), "--n-boot", "200"]) == 0
    gaps = pd.read_csv(exp / "analysis" / "gaps.csv")
    assert set(gaps.regularizer) == set(trials.regularizer) and "none" in set(gaps.regularizer)
    assert set(gaps.dataset) == {"treebank"}
