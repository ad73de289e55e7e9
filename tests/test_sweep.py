"""The sweep on a real local Ray cluster: ASHA, trial table, Optuna storage, retries, resume,
confirmation, the POS task (faults and interruptions: test_faults.py)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray

from posgen import make_nltk_data
from study.run import main
from study.trial_table import read_trial_rows

REQUIRED = {"experiment", "phase", "trial_id", "task", "dataset", "model", "regularizer", "seed", "lr", "l2", "dropout",
            "max_epochs", "epoch", "train_loss", "train_acc", "train_clean_loss", "train_clean_acc", "val_loss",
            "val_acc", "gap_loss", "gap_acc", "test_loss", "test_acc", "status", "config", "searched"}


@pytest.fixture(scope="module")
def cluster():
    os.environ["REGSTUDY_FAULT"] = "raise_once@1"  # workers inherit it: every trial fails once
    os.environ["REGSTUDY_OFFLINE"] = "1"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    os.environ.pop("REGSTUDY_FAULT", None)


def result_rows(trial_dir: Path) -> list[dict]:
    rows = read_trial_rows(trial_dir)
    assert rows, f"no result.json in {trial_dir}"
    return rows


def result_epochs(trial_dir: Path) -> list[int]:
    return [r["epoch"] for r in result_rows(trial_dir)]


def test_sweep_asha_table_optuna_retry_and_confirm(cluster, tiny_zip, tmp_path, cache_dir, capsys):
    results = tmp_path / "results"
    common = ["--space", "l2_dropout", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", "3",
              "--set", "batch_size=16", "--name", "exp", "--results-dir", str(results)]
    rc = main(common + ["--num-samples", "6", "--grace-period", "1", "--reduction-factor", "3",
                        "--max-concurrent", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    exp = results / "exp"
    table = pd.read_parquet(exp / "trials.parquet")
    assert REQUIRED <= set(table.columns)
    assert list(table.columns).index("dataset") == list(table.columns).index("task") + 1
    assert set(table.dataset) == {"tinyimagenet"}  # (the default dataset, read from --data)
    search = table[table.phase == "search"]
    assert search.trial_id.nunique() == 6
    # each epoch of each trial exactly once, epochs 1..n without holes
    for tid, g in search.groupby("trial_id"):
        assert sorted(g.epoch) == list(range(1, len(g) + 1)), tid
    per_trial = search.groupby("trial_id").agg(n=("epoch", "max"), status=("status", "first"))
    assert set(per_trial.status) <= {"completed", "stopped"}
    assert (per_trial[per_trial.status == "completed"].n == 3).all()
    assert (per_trial[per_trial.status == "stopped"].n < 3).all()
    assert (per_trial.status == "stopped").sum() >= 1  # ASHA stopped something
    # test metrics only on the final epoch of full-budget trials
    assert search[search.test_acc.notna()].epoch.eq(3).all()
    # the injected fault hit every trial once after epoch 1, and the retry resumed from that
    # epoch's checkpoint: the epochs after it were reported by an attempt restored from epoch 1
    trial_dirs = [d for d in (exp / "ray" / "search").iterdir() if d.is_dir()]
    assert sorted(d.name.removeprefix("trial_") for d in trial_dirs) == sorted(
        t.removeprefix("search-") for t in search.trial_id.unique())
    retried = 0
    for d in trial_dirs:
        reports = result_rows(d)
        if max(r["epoch"] for r in reports) > 1:  # (ASHA may stop a trial at its epoch-1 report)
            assert (d / ".fault_raise").exists()
            assert all(r["restored_from_epoch"] == 1 for r in reports if r["epoch"] > 1), d.name
            retried += 1
        assert all(r["restored_from_epoch"] == 0 for r in reports if r["epoch"] == 1)
    assert retried >= 1
    # the Optuna study is in SQLite with every trial and its searched parameters
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{exp / 'optuna.db'}")
    assert len(study.trials) == 6
    assert all({"lr", "l2", "dropout"} <= set(t.params) for t in study.trials)
    # the table's parameters are the ones Optuna proposed
    lrs = sorted(round(t.params["lr"], 12) for t in study.trials)
    assert sorted(round(v, 12) for v in search.drop_duplicates("trial_id").lr) == lrs
    summary = pd.read_csv(exp / "summary.csv")
    assert len(summary) == 6 and {"best_epoch", "best_val_loss", "final_val_loss", "epochs_run"} <= set(summary.columns)
    assert "best configuration per regularizer" in out and "l2+dropout" in out
    assert set(table.columns) >= {"diverged", "learning_rate", "epoch_time_s"} and not search.diverged.any()
    assert search.dropout.between(0, 0.7).all() and (search.l2 > 0).all()
    assert search.config.map(lambda c: json.loads(c)["epochs"]).eq(3).all()
    assert set(search.searched) == {'["lr", "l2", "dropout"]'}
    meta = json.loads((exp / "experiment.json").read_text())
    assert meta["budget_per_regularizer"] == {"l2+dropout": 6} and meta["wall_time_s"] > 0
    assert {k: meta["search"][k] for k in ("num_samples", "grace_period", "reduction_factor", "max_t", "seed")} == \
        {"num_samples": 6, "grace_period": 1, "reduction_factor": 3.0, "max_t": 3, "seed": 0}
    assert meta["search"]["tpe_startup_trials"] == 3  # half of the 6 trials random, then TPE
    assert meta["fixed"]["classes"] == 4 and meta["versions"]["ray"] == ray.__version__
    assert meta["hardware"]["cpu_count"] >= 1 and "start_time" in meta and "end_time" in meta

    # confirmation later on the same experiment: best config, seeds 1..2, full budget, no early stop
    rc = main(common + ["--confirm-only", "--confirm-seeds", "2"])
    assert rc == 0
    table = pd.read_parquet(exp / "trials.parquet")
    conf = table[table.phase == "confirm"]
    final = conf.sort_values("epoch").groupby("trial_id").tail(1)  # the printed summary: final epochs
    assert (f"l2+dropout  n=2 val_loss={final.val_loss.mean():.4f}+-{final.val_loss.std():.4f} "
            f"gap_loss={final.gap_loss.mean():.4f}+-") in capsys.readouterr().out
    assert sorted(conf.drop_duplicates("trial_id").seed) == [1, 2]
    assert (conf.groupby("trial_id").epoch.max() == 3).all() and set(conf.status) == {"completed"}
    best = summary.sort_values("best_val_loss").iloc[0]
    for key in ("lr", "l2", "dropout"):  # the searched columns are the winner's parameters
        assert conf[key].round(12).unique().tolist() == [round(best[key], 12)], key
    assert set(conf.config.map(lambda c: json.loads(c)["seed"])) == {1, 2}
    assert not conf.duplicated(["trial_id", "epoch"]).any() and conf.test_acc.notna().sum() == 2
    pd.testing.assert_frame_equal(table[table.phase == "search"].reset_index(drop=True), search.reset_index(drop=True))
    meta = json.loads((exp / "experiment.json").read_text())
    assert meta["confirm"]["seeds"] == [1, 2] and meta["confirm"]["configs"][0]["trial_id"] == best.trial_id
    assert meta["search"]["num_samples"] == 6 and len(meta["commands"]) == 2  # the search's record is kept

    # ... and the analysis of it: summarize + report, consistent with the table
    from analysis.report import main as report_main
    assert report_main([str(exp)]) == 0
    out_dir = exp / "analysis"
    for name in ("gaps.csv", "table1.md", "report.html", "report.md", "figures/curves.png", "figures/gaps.png",
                 "figures/asha.png", "figures/strength.png"):
        assert (out_dir / name).exists(), name
    gaps = pd.read_csv(out_dir / "gaps.csv")
    row = gaps[gaps.regularizer == "l2+dropout"].iloc[0]
    assert row.n_seeds == 2 and row.source == "confirm" and row.dataset == "tinyimagenet"
    final = conf.sort_values("epoch").groupby("trial_id").val_loss.last()
    val_col = [c for c in gaps.columns if "val_loss" in c and c.endswith("_mean") and "final" in c][0]
    assert row[val_col] == pytest.approx(final.mean())


def test_pos_sweep(cluster, tmp_path):
    nltk_dir = make_nltk_data(tmp_path / "nltk", "treebank", n=60)
    results = tmp_path / "results"
    rc = main(["--space", "pos_l2_dropout", "--nltk-data", str(nltk_dir), "--max-epochs", "2", "--num-samples", "2",
               "--set", "hidden=16", "--set", "embed_dim=16", "--name", "pos", "--results-dir", str(results)])
    assert rc == 0
    t = pd.read_parquet(results / "pos" / "trials.parquet")
    assert set(t.task) == {"pos"} and set(t.model) == {"rnn"} and t.trial_id.nunique() == 2
    assert set(t.dataset) == {"treebank"}  # for tagging, the corpus
    assert t.val_acc.between(0, 1).all() and "test_acc_oov" in t.columns


def test_trial_table_statuses_dedupe_and_atomic_write(tmp_path, monkeypatch):
    """collect() on hand-made trial dirs: one row per (trial, epoch), latest report wins, an epoch
    missing from result.json comes from the checkpoint's history, statuses, abandoned dirs."""
    from study import trial_table

    def trial(name, reports, history=None):
        d = tmp_path / "search" / f"trial_{name}"
        d.mkdir(parents=True)
        lines = [json.dumps({"trial_id": name, "config": {"lr": 0.001, "dropout": 0.3}, "epoch": e,
                             "val_loss": v, "val_acc": 0.5, "gap_loss": 0.1, "gap_acc": 0.0,
                             "diverged": v != v}) for e, v in reports]
        (d / "result.json").write_text("\n".join(lines) + "\n" + ('{"trial_id": "trunc' if name == "a" else ""))
        if history:
            (d / "checkpoint_000002").mkdir()
            (d / "checkpoint_000002" / "history.json").write_text(json.dumps(
                {"params": {"lr": 0.001, "dropout": 0.3}, "epochs": [{"epoch": e, "val_loss": v} for e, v in history]}))

    trial("a", [(1, 2.0), (2, 1.5), (2, 1.4), (3, 1.2)])              # retried epoch 2: latest wins
    trial("b", [(1, 2.0)])                                           # stopped by ASHA after 1 epoch
    trial("c", [(1, 2.0)], history=[(1, 2.0), (2, 1.9)])             # epoch 2 only in the checkpoint
    trial("d", [(1, 2.0), (2, float("nan"))])                        # diverged
    trial("e", [(1, 2.0)])                                           # abandoned by a killed driver
    fixed = {"regularizer": "dropout", "epochs": 3}
    statuses = {"a": "done", "b": "done", "c": "errored", "d": "done"}
    t = trial_table.collect(tmp_path / "search", experiment="x", phase="search", fixed=fixed,
                            searched=["lr", "dropout"], statuses=statuses, finished=True)
    per = t.groupby("trial_id").agg(status=("status", "first"), epochs=("epoch", list))
    assert per.status.to_dict() == {"search-a": "completed", "search-b": "stopped", "search-c": "errored",
                                    "search-d": "diverged"}
    assert per.epochs.to_dict() == {"search-a": [1, 2, 3], "search-b": [1], "search-c": [1, 2], "search-d": [1, 2]}
    assert t[(t.trial_id == "search-a") & (t.epoch == 2)].val_loss.item() == 1.4
    assert (t.lr == 0.001).all() and (t.dropout == 0.3).all() and (t.max_epochs == 3).all()
    assert (t.dataset == "tinyimagenet").all()
    live = trial_table.collect(tmp_path / "search", experiment="x", phase="search", fixed=fixed,
                               searched=["lr", "dropout"], statuses=None)
    assert set(live.status) == {"running", "diverged"} and live.trial_id.nunique() == 5
    # summary and best-per-regularizer skip errored/diverged trials
    best = trial_table.best_per_regularizer(t)
    assert best.trial_id.tolist() == ["search-a"] and best.best_val_loss.item() == 1.2
    s = trial_table.summarize(t).set_index("trial_id")
    assert s.loc["search-a", "epochs_run"] == 3 and s.loc["search-a", "best_epoch"] == 3
    # atomic writes: a failing write leaves the previous file whole, and no temp file behind
    trial_table.write_tables(t, tmp_path / "out")
    before = (tmp_path / "out" / "trials.parquet").read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        trial_table.write_tables(t.head(1), tmp_path / "out")
    assert (tmp_path / "out" / "trials.parquet").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.csv", "trials.csv", "trials.parquet"]
