"""Bounded, cheap checkpoints and the incremental trial table, on a real local Ray cluster:
at most K checkpoints per trial; a trial killed after epoch 3 with K=1 resumes from epoch 3 and
reproduces the uninterrupted numbers; ``--checkpoint-every 2`` resumes from the last saved epoch
and re-runs the epochs after it, each epoch once in the table; an incremental refresh gives the
table a full rebuild gives."""
from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest

from study import trial_dirs, trial_table
from study.run import main
from study.trainable import checkpoint_due
from study.trial_table import read_trial_rows

EPOCHS = 5
METRICS = ["train_loss", "train_clean_loss", "val_loss", "val_acc", "gap_loss"]


def sweep(tiny_zip, results, name, *extra, trials=2):
    # one thread per trial and a seeded TPE: the same configurations and the same numbers
    # in every run; ASHA stops nothing (grace period = the budget)
    return main(["--space", "none", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", str(EPOCHS),
                 "--set", "batch_size=16", "--name", name, "--results-dir", str(results),
                 "--num-samples", str(trials), "--max-concurrent", "2", "--cpus-per-trial", "1",
                 "--grace-period", str(EPOCHS), "--table-refresh-s", "0", "--quiet", *extra])


@pytest.fixture(scope="module")
def reference(faults, tiny_zip, tmp_path_factory):
    """The uninterrupted sweep (2 trials x 5 epochs, default checkpoints) that others must match."""
    results = tmp_path_factory.mktemp("ckpt_ref")
    cache = results / "cache"
    os.environ["REGSTUDY_CACHE"] = str(cache)
    try:
        assert sweep(tiny_zip, results, "ref") == 0
    finally:
        os.environ.pop("REGSTUDY_CACHE", None)
    return results / "ref"


def by_lr(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["lr", "epoch"]).set_index(["lr", "epoch"])[METRICS]


def trial_dirs_of(exp):
    return sorted(p for p in (exp / "ray" / "search").iterdir() if p.is_dir())


def killed_at_epoch_4(faults, tiny_zip, results, name, *extra):
    """A sweep whose every trial's worker is SIGKILLed once after training epoch 4, before its report."""
    faults.write_text("sigkill_once@4")
    try:
        assert sweep(tiny_zip, results, name, *extra) == 0
    finally:
        faults.write_text("")
    return results / name


def test_checkpoint_due():
    assert [e for e in range(1, 8) if checkpoint_due(e, 7, 1)] == [1, 2, 3, 4, 5, 6, 7]
    assert [e for e in range(1, 8) if checkpoint_due(e, 7, 3)] == [3, 6, 7]
    assert [e for e in range(1, 5) if checkpoint_due(e, 4, 10)] == [4]


def test_default_keeps_two_checkpoints_and_records_disk(reference, capsys):
    for d in trial_dirs_of(reference):
        assert sorted(p.name for p in d.glob("checkpoint_*")) == ["checkpoint_000003", "checkpoint_000004"]
    record = json.loads((reference / "experiment.json").read_text())
    assert record["search"]["keep_checkpoints"] == 2 and record["search"]["checkpoint_every"] == 1
    on_disk = sum(p.stat().st_size for p in reference.rglob("*") if p.is_file() and p.name != "experiment.json")
    assert record["disk"]["bytes"] > 0 and abs(record["disk"]["bytes"] - on_disk) < 0.05 * on_disk
    table = pd.read_parquet(reference / "trials.parquet")
    assert (table.checkpoint_time_s > 0).all()  # every epoch wrote one (and timed it)
    assert 0 <= record["table_refresh_s_last"] < 5


def test_killed_after_epoch_3_with_one_checkpoint_resumes_and_reproduces(faults, reference, tiny_zip, tmp_path,
                                                                        cache_dir):
    """K=1; every trial's worker is SIGKILLed once after training epoch 4, before reporting it:
    the retry resumes from epoch 3's checkpoint (the only one kept) and the numbers are those of
    the uninterrupted sweep."""
    exp = killed_at_epoch_4(faults, tiny_zip, tmp_path, "k1", "--keep-checkpoints", "1")
    for d in trial_dirs_of(exp):
        assert [p.name for p in d.glob("checkpoint_*")] == ["checkpoint_000004"]  # (the 5th report's)
        assert (d / ".faults").read_text().split() == ["sigkill@4"]
        restored = {r["epoch"]: r["restored_from_epoch"] for r in read_trial_rows(d)}
        assert restored[4] == restored[5] == 3
    table = pd.read_parquet(exp / "trials.parquet")
    assert not table.duplicated(["trial_id", "epoch"]).any() and (table.failures == 1).all()
    pd.testing.assert_frame_equal(by_lr(table), by_lr(pd.read_parquet(reference / "trials.parquet")))


def test_checkpoint_every_2_resumes_from_the_last_saved_epoch(faults, reference, tiny_zip, tmp_path, cache_dir):
    """Checkpoints at epochs 2, 4 and 5; a kill after training epoch 4 (before its checkpoint)
    resumes from epoch 2 and re-runs epochs 3 and 4: each epoch once in the table, the same
    numbers as the uninterrupted sweep, and only checkpointed epochs pay for a checkpoint."""
    exp = killed_at_epoch_4(faults, tiny_zip, tmp_path, "e2", "--checkpoint-every", "2")
    for d in trial_dirs_of(exp):
        # (Tune restarts result.json at the retry: epochs 1-2 then come from the checkpoint's history)
        restored = {r["epoch"]: r["restored_from_epoch"] for r in read_trial_rows(d)}
        assert restored[3] == restored[4] == restored[5] == 2 and restored.get(2, 0) == 0
        assert len(list(d.glob("checkpoint_*"))) == 2
    table = pd.read_parquet(exp / "trials.parquet")
    assert not table.duplicated(["trial_id", "epoch"]).any()
    assert sorted(table.groupby("epoch").checkpoint_time_s.apply(lambda s: bool((s > 0).all())).items()) == \
        [(1, False), (2, True), (3, False), (4, True), (5, True)]
    pd.testing.assert_frame_equal(by_lr(table), by_lr(pd.read_parquet(reference / "trials.parquet")))


def test_incremental_refresh_equals_a_full_rebuild(reference, tmp_path):
    """A reader that saw the phase before reads only the trials whose files changed, and its
    table equals the one built from scratch; a status change alone reads no file."""
    search = tmp_path / "search"
    shutil.copytree(reference / "ray" / "search", search)
    meta = json.loads((reference / "experiment.json").read_text())
    kw = dict(experiment="ref", phase="search", fixed=meta["fixed"], searched=meta["searched"])
    reader = trial_dirs.TrialReader()
    first = trial_table.collect(search, reader=reader, **kw)
    assert reader.read_last == 2
    again = trial_table.collect(search, reader=reader, **kw)
    assert reader.read_last == 0
    pd.testing.assert_frame_equal(first, again)
    # trial a: its last epoch reported again (the latest report wins); trial b: a failed
    # attempt on record; and a third trial directory
    a, b = (search / d.name for d in trial_dirs_of(reference))
    last = read_trial_rows(a)[-1]
    with open(a / "result.json", "a") as f:
        f.write(json.dumps({**last, "val_loss": 0.123}) + "\n")
    (b / "error.txt").write_text("Failure # 1 (occurred at 2026-11-25_10-00-00)\nRuntimeError: boom\n")
    shutil.copytree(a, search / "trial_copy")
    (search / "trial_copy" / "result.json").write_text(
        "".join(json.dumps({**r, "trial_id": "copy"}) + "\n" for r in read_trial_rows(a)))
    incremental = trial_table.collect(search, reader=reader, **kw)
    assert reader.read_last == 3
    full = trial_table.collect(search, **kw)
    pd.testing.assert_frame_equal(incremental, full)
    rows_a = incremental[incremental.trial_id == f"search-{last['trial_id']}"]
    rows_b = incremental[incremental.trial_id == f"search-{read_trial_rows(b)[-1]['trial_id']}"]
    assert rows_a.val_loss.iloc[-1] == 0.123 and len(rows_a) == EPOCHS
    assert (rows_b.failures == 1).all() and incremental.trial_id.nunique() == 3
    statuses = {tid.removeprefix("search-"): "done" for tid in incremental.trial_id.unique()}
    done = trial_table.collect(search, reader=reader, statuses=statuses, finished=True, **kw)
    assert reader.read_last == 0 and set(done.status) == {"completed"}
    pd.testing.assert_frame_equal(done, trial_table.collect(search, statuses=statuses, finished=True, **kw))
    # a trial directory deleted: its rows go (study.trial_table.keep_lost_trials keeps them in the
    # written table); a file that cannot be read now is read again next time, not remembered empty
    shutil.rmtree(search / "trial_copy")
    assert trial_table.collect(search, reader=reader, **kw).trial_id.nunique() == 2 and reader.read_last == 0
    with open(b / "result.json", "a") as f:
        f.write(json.dumps({**read_trial_rows(b)[-1], "val_loss": 0.5}) + "\n")
    real = trial_dirs._read_text
    trial_dirs._read_text = lambda fs, path: None if path.endswith("result.json") else real(fs, path)
    try:
        trial_table.collect(search, reader=reader, **kw)
    finally:
        trial_dirs._read_text = real
    assert reader.read_last == 1
    again = trial_table.collect(search, reader=reader, **kw)
    assert reader.read_last == 1 and again[again.trial_id == rows_b.trial_id.iloc[0]].val_loss.iloc[-1] == 0.5
