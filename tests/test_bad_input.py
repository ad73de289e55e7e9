"""Bad input to study.train_once and the analysis commands, through their main(): one line that
names the option, key or file, exit 2, and no work done; the exit-code contract of study.cli
(0 done, 1 failed, 2 bad input, 130 interrupted); an unfinished experiment analysed as such."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cliout import one_error
from datagen import damage_zip_entry, make_tiny_imagenet, wnid
from posgen import make_nltk_data
from tablegen import make_experiment

from analysis import report as report_cli
from analysis import summarize as summarize_cli
from study import cli, experiment_lock, train_once

ROOT = Path(__file__).resolve().parents[1]


# --- not a classification problem ---------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--classes", "1"], "classes: 1 is out of range; allowed: [2, inf) (integer)"),
    (["--set", f"class_list={wnid(1)},{wnid(1)}"], f"class_list: '{wnid(1)}' is listed twice; allowed: each wnid once"),
    (["--set", f"class_list={wnid(1)}"], "class_list: 1 class (n00000001); allowed: at least two wnids"),
    (["--set", "lr=inf"], "lr: inf is out of range; allowed: (0, inf)"),
    (["--set", "image_size=7"], "image_size: 7 is out of range for model 'alexnet'; allowed: [57, 88]"),
    (["--model", "efficientnet_b0", "--set", "image_size=32"],
     "image_size: 32 is out of range for model 'efficientnet_b0'; allowed: [33, inf)"),
    (["--set", "seed=-1"], "seed: -1 is out of range; allowed: [0, 4294967295] (integer)"),
    (["--set", "pretrained=w.pth"], "pretrained: model 'alexnet' does not load pretrained weights"),
    (["--set", "download_md5=abc"], "download_md5: 'abc' is not an MD5 checksum"),
])
def test_settings_refused_before_anything_runs(tiny_zip, cache_dir, capsys, no_training, args, message):
    rc = train_once.main(["--data", str(tiny_zip), "--epochs", "1", *args])
    assert rc == 2
    err = one_error(capsys)
    assert err.startswith(f"error: {message}"), err


@pytest.mark.parametrize("fraction,message", [
    ("0.999", "val_fraction=0.999 leaves class n00000000 (20 training images) with no training image; every "
              "split (train, validation, test) needs at least one image of every class: allowed here: "
              "val_fraction < 0.975"),
])
def test_a_split_without_a_class_is_refused_before_decoding(tiny_zip, cache_dir, capsys, no_training,
                                                            fraction, message):
    rc = train_once.main(["--data", str(tiny_zip), "--classes", "2", "--set", f"val_fraction={fraction}"])
    assert rc == 2 and one_error(capsys) == f"error: {message}"
    assert not (cache_dir / "decoded").exists() or not any((cache_dir / "decoded").iterdir())  # not decoded


def test_a_class_with_one_training_image_is_refused(tmp_path, cache_dir, capsys, no_training):
    src = make_tiny_imagenet(tmp_path / "one.zip", train_per_class=1)
    rc = train_once.main(["--data", str(src), "--classes", "2"])
    assert rc == 2
    assert one_error(capsys) == ("error: class n00000000 has 1 training image; every split (train, validation, "
                                 "test) needs at least one image of every class, so a class needs at least 2 "
                                 "training images")


def test_pos_split_without_sentences_is_refused(tmp_path, capsys, no_training, monkeypatch):
    monkeypatch.setenv("REGSTUDY_OFFLINE", "1")
    nltk_dir = make_nltk_data(tmp_path / "nltk", n=4)
    rc = train_once.main(["--task", "pos", "--nltk-data", str(nltk_dir), "--set", "val_fraction=0.45",
                          "--set", "test_fraction=0.45"])
    assert rc == 2
    err = one_error(capsys)
    assert err.startswith("error: 4 sentences are too few for val_fraction=0.45, test_fraction=0.45: every "
                          "split (train, validation, test) needs at least one sentence"), err


def test_declared_input_sizes_are_the_models_real_limits():
    """ModelSpec.input_sizes (what the config refuses) match what the layers accept."""
    from study.models import MODELS, AlexNetStyle
    from torchvision.models import efficientnet_b0

    lo, hi = MODELS["alexnet"].input_sizes
    net = AlexNetStyle(3).eval()
    for side in (lo, hi):
        assert net(torch.zeros(1, 3, side, side)).shape == (1, 3)
    for side in (lo - 1, hi + 1):
        with pytest.raises(RuntimeError):
            net(torch.zeros(1, 3, side, side))
    lo, hi = MODELS["efficientnet_b0"].input_sizes
    assert hi == float("inf")
    eff = efficientnet_b0(num_classes=3).train()  # a last batch of one image, in training mode
    assert eff(torch.zeros(1, 3, lo, lo)).shape == (1, 3)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        eff(torch.zeros(1, 3, lo - 1, lo - 1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_one_line_exit_2(tiny_zip, cache_dir, capsys, no_training):
    rc = train_once.main(["--data", str(tiny_zip), "--device", "cuda"])
    assert rc == 2
    assert one_error(capsys) == "error: device: cuda was asked for but no GPU is visible; allowed here: auto, cpu"


def test_damaged_pretrained_weights_are_bad_input(tiny_zip, cache_dir, tmp_path, capsys):
    (tmp_path / "w.pth").write_bytes(b"not a state dict")
    rc = train_once.main(["--data", str(tiny_zip), "--classes", "2", "--epochs", "1", "--model", "efficientnet_b0",
                          "--set", f"pretrained={tmp_path / 'w.pth'}"])
    assert rc == 2
    assert one_error(capsys).startswith(f"error: pretrained: {tmp_path / 'w.pth'} is not a PyTorch state_dict (")


# --- output paths, checked before training --------------------------------------------------------
def _json_target(kind: str, tmp_path: Path) -> tuple[str, str]:
    if kind == "proc":
        return "/proc/x.json", "--json /proc/x.json: cannot write in /proc (No such file or directory)"
    if kind == "directory":
        (tmp_path / "d").mkdir()
        return str(tmp_path / "d"), f"--json {tmp_path / 'd'}: is a directory; give a file name"
    (tmp_path / "f").write_text("x")
    return str(tmp_path / "f" / "x.json"), f"--json {tmp_path / 'f' / 'x.json'}: {tmp_path / 'f'} is a file, not a directory"


@pytest.mark.parametrize("kind", ["proc", "directory", "under_a_file"])
def test_unwritable_json_is_refused_before_training(tiny_zip, cache_dir, tmp_path, capsys, no_training, kind):
    target, message = _json_target(kind, tmp_path)
    rc = train_once.main(["--data", str(tiny_zip), "--json", target])
    assert rc == 2 and one_error(capsys) == f"error: {message}"


@pytest.mark.parametrize("command", [summarize_cli.main, report_cli.main])
def test_analysis_out_that_is_a_file_is_refused(analysed, tmp_path, capsys, command, monkeypatch):
    monkeypatch.setattr(summarize_cli, "summarize", lambda *a, **k: pytest.fail("analysis started"))
    monkeypatch.setattr(report_cli, "summarize", lambda *a, **k: pytest.fail("analysis started"))
    (tmp_path / "file").write_text("precious")
    rc = command([str(analysed), "--out", str(tmp_path / "file")])
    assert rc == 2 and one_error(capsys) == f"error: --out {tmp_path / 'file'}: is a file, not a directory"
    assert (tmp_path / "file").read_text() == "precious"


# --- damaged data ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("damaged")
    good = make_tiny_imagenet(d / "good.zip")
    jpeg = f"tiny-imagenet-200/train/{wnid(1)}/images/{wnid(1)}_3.JPEG"
    return {"wnids": damage_zip_entry(good, d / "wnids.zip", "tiny-imagenet-200/wnids.txt", 1),
            "jpeg": damage_zip_entry(good, d / "jpeg.zip", jpeg)}


CRC_MESSAGES = {
    "wnids": "corrupt file {zip}:tiny-imagenet-200/wnids.txt: it fails its CRC-32 check; the zip is damaged: "
             "download it again",
    "jpeg": "corrupt image {zip}:tiny-imagenet-200/train/n00000001/images/n00000001_3.JPEG: it fails its CRC-32 "
            "check; the zip is damaged: download it again",
}


@pytest.mark.parametrize("entry", ["wnids", "jpeg"])
def test_zip_entry_failing_its_crc_train_once(damaged, cache_dir, capsys, no_training, entry):
    rc = train_once.main(["--data", str(damaged[entry]), "--classes", "2"])
    assert rc == 2 and one_error(capsys) == "error: " + CRC_MESSAGES[entry].format(zip=damaged[entry])


@pytest.mark.parametrize("entry", ["wnids", "jpeg"])
def test_zip_entry_failing_its_crc_study_run(damaged, tmp_path, cache_dir, capsys, entry, monkeypatch):
    from study import cluster
    from study.run import main
    monkeypatch.setattr(cluster, "connect", lambda *a, **k: pytest.fail("a Ray cluster was started for bad data"))
    rc = main(["--space", "none", "--data", str(damaged[entry]), "--classes", "2",
               "--results-dir", str(tmp_path / "results")])
    assert rc == 2 and one_error(capsys) == "error: " + CRC_MESSAGES[entry].format(zip=damaged[entry])


def test_truncated_decode_cache_is_decoded_again(tmp_path, cache_dir, capsys, caplog):
    """A cut-short train_x.npy (a full disk, a killed copy): the next run says so, decodes again,
    and trains on the same images."""
    src = make_tiny_imagenet(tmp_path / "t.zip", n_classes=2, train_per_class=10, val_per_class=2)
    args = ["--data", str(src), "--classes", "2", "--epochs", "1", "--set", "batch_size=8",
            "--json", str(tmp_path / "a.json")]
    assert train_once.main(args) == 0
    capsys.readouterr()
    (entry,) = (cache_dir / "decoded").iterdir()
    first = np.load(entry / "train_x.npy").copy()
    with open(entry / "train_x.npy", "r+b") as f:
        f.truncate(os.path.getsize(entry / "train_x.npy") // 2)
    assert train_once.main(args[:-1] + [str(tmp_path / "b.json")]) == 0
    # (logged as a warning: on stderr from the command line, in caplog under pytest)
    assert f"the decoded-image cache {entry} is damaged (mmap length is greater than file size); decoding the " \
           "images again" in caplog.text, caplog.text
    np.testing.assert_array_equal(np.load(entry / "train_x.npy"), first)
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["epochs"][0]["val_loss"] == pytest.approx(b["epochs"][0]["val_loss"], rel=1e-6)


# --- interrupted, failed, debug -------------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_in_train_once_is_one_line_and_130(tiny_zip, cache_dir, tmp_path, capsys, monkeypatch, sig):
    """A real signal to this process mid-run (training replaced by one reported epoch and a wait)."""
    def one_epoch_then_signal(cfg, report, data=None):
        report({c: 1.0 for c in train_once.COLUMNS}, None)
        os.kill(os.getpid(), sig)
        time.sleep(30)
        pytest.fail("the signal did not stop the run")

    monkeypatch.setattr(train_once, "run_trial", one_epoch_then_signal)
    out = tmp_path / "partial.json"
    rc = train_once.main(["--data", str(tiny_zip), "--classes", "4", "--epochs", "5", "--json", str(out)])
    assert rc == 130
    assert one_error(capsys) == (f"interrupted ({sig.name}): after 1 of 5 epochs; its 1 finished epoch(s) are "
                                 f"in {out}")
    doc = json.loads(out.read_text())
    assert doc["interrupted"] is True and len(doc["epochs"]) == 1
    assert signal.getsignal(signal.SIGTERM) is not None  # handlers restored (pytest's own for SIGINT)


def test_ctrl_c_in_a_real_training_run(tiny_zip, tmp_path):
    """python -m study.train_once in a subprocess, SIGINT after its first epoch: exit 130, one line."""
    env = {**os.environ, "REGSTUDY_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.train_once", "--data", str(tiny_zip), "--classes", "2", "--epochs", "500",
         "--set", "batch_size=16"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        proc.stdout.readline()  # the header
        first = proc.stdout.readline()  # epoch 1
        assert first.split()[0] == "1", first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted (SIGINT): after ") and "of 500 epochs" in lines[0], err


def test_unexpected_failure_is_one_line_exit_1_and_debug_shows_the_traceback(tiny_zip, cache_dir, capsys,
                                                                              monkeypatch):
    def boom(cfg, report, data=None):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(train_once, "run_trial", boom)
    args = ["--data", str(tiny_zip), "--classes", "4"]
    assert train_once.main(args) == 1
    assert one_error(capsys) == "error: RuntimeError: boom second line (set REGSTUDY_DEBUG=1 for the traceback)"
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    assert train_once.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in boom" in err
    assert err.strip().splitlines()[-1].startswith("error: RuntimeError: boom")


def test_disk_full_while_writing_is_exit_1_naming_the_file(tiny_zip, cache_dir, tmp_path, capsys, monkeypatch):
    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "out.json"))

    monkeypatch.setattr(train_once, "run_trial", lambda cfg, report, data=None: {"test_loss": 1.0})
    monkeypatch.setattr(train_once, "atomic_write_text", full)
    rc = train_once.main(["--data", str(tiny_zip), "--classes", "4", "--json", str(tmp_path / "out.json")])
    assert rc == 1 and capsys.readouterr().err.strip() == f"error: No space left on device ({tmp_path / 'out.json'})"


# --- the analysis commands ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    return make_experiment(tmp_path_factory.mktemp("exp") / "exp", n_search=3, seeds=(0, 1), max_epochs=6,
                           regularizers=("none", "l2"))


@pytest.mark.parametrize("command", [summarize_cli.main, report_cli.main])
@pytest.mark.parametrize("args,message", [
    (["--epoch", "0"], "--epoch: 0 is out of range; allowed: [1, inf) (integer)"),
    (["--epoch", "-3"], "--epoch: -3 is out of range; allowed: [1, inf) (integer)"),
    (["--n-boot", "0"], "--n-boot: 0 is out of range; allowed: [100, 1000000] (integer)"),
    (["--n-boot", "-5"], "--n-boot: -5 is out of range; allowed: [100, 1000000] (integer)"),
    (["--seed", "-1"], "--seed: -1 is out of range; allowed: [0, 4294967295] (integer)"),
])
def test_analysis_numbers_out_of_range(analysed, tmp_path, capsys, command, args, message):
    rc = command([str(analysed), "--out", str(tmp_path / "out"), *args])
    assert rc == 2 and one_error(capsys) == f"error: {message}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [summarize_cli.main, report_cli.main])
def test_analysis_of_unusable_files(analysed, tmp_path, capsys, command):
    bad = tmp_path / "bad"
    shutil.copytree(analysed, bad)
    (bad / "experiment.json").write_text('{"name": "x",\n')
    rc = command([str(bad), "--n-boot", "100"])
    assert rc == 2
    assert one_error(capsys) == (f"error: {bad / 'experiment.json'}: not valid JSON (Expecting property name "
                                 "enclosed in double quotes at line 2 column 1)")
    (bad / "experiment.json").write_text("[1, 2]")
    assert command([str(bad), "--n-boot", "100"]) == 2
    assert one_error(capsys) == f"error: {bad / 'experiment.json'}: expected a JSON object, found list"
    shutil.copy(analysed / "experiment.json", bad / "experiment.json")
    (bad / "trials.parquet").write_bytes((analysed / "trials.parquet").read_bytes()[:500])
    assert command([str(bad), "--n-boot", "100"]) == 2
    assert one_error(capsys).startswith(f"error: {bad / 'trials.parquet'}: cannot read the trial table: ")
    assert command([str(tmp_path / "nothing")]) == 2
    assert one_error(capsys) == f"error: no such results directory: {tmp_path / 'nothing'}"


def test_table1_heading_names_the_epoch_asked_for(analysed, tmp_path, capsys):
    assert summarize_cli.main([str(analysed), "--out", str(tmp_path), "--no-figures", "--n-boot", "100",
                               "--epoch", "4"]) == 0
    md = (tmp_path / "table1.md").read_text()
    assert "loss at epoch 4 (= min(4, max_epochs); the study used epoch 25)" in md
    assert "experiment " + str(analysed) + ": finished" in capsys.readouterr().err


# --- an unfinished experiment ---------------------------------------------------------------------
def test_interrupted_experiment_is_analysed_as_such(tmp_path, capsys, legacy_experiment):
    """The legacy experiment is a real sweep interrupted with SIGINT: two trials finished, the l2 trial
    interrupted after its first epoch. That trial is not l2's result; the state is said."""
    exp = tmp_path / "legacy"
    shutil.copytree(legacy_experiment[0], exp)
    table = pd.read_parquet(exp / "trials.parquet")
    interrupted = table[table.status == "interrupted"]
    assert set(interrupted.regularizer) == {"l2"} and (table.regularizer == "l2").sum() == len(interrupted)

    assert report_cli.main([str(exp), "--n-boot", "100"]) == 0
    err = capsys.readouterr().err
    state = (f"experiment {exp}: interrupted: 1 trial unfinished (1 search); 1 of 4 planned search trials not "
             f"started; unfinished trials are not results; continue with: python -m study.run --name legacy "
             f"--results-dir {tmp_path} --resume")
    assert state in err.splitlines(), err
    gaps = pd.read_csv(exp / "analysis" / "gaps.csv").set_index("regularizer")
    assert gaps.loc["l2", "source"] == "no result" and gaps.loc["l2", "n_seeds"] == 0
    assert gaps.loc["l2", "note"] == "no finished trial (1 interrupted): no result"
    assert np.isnan(gaps.loc["l2", "final_val_loss_mean"])
    assert (gaps.drop(index="l2")["source"] == "search-best").all()  # the finished trials are results
    assert set(gaps["dataset"]) == {"treebank"}  # (recorded before the column: the corpus, by the rule)
    budget = pd.read_csv(exp / "analysis" / "budget.csv").set_index("regularizer")
    assert budget.loc["l2", "interrupted"] == 1 and budget["completed"].sum() + budget["stopped"].sum() == 2
    md = (exp / "analysis" / "report.md").read_text()
    assert md.splitlines()[2].startswith("**State: INTERRUPTED: 1 trial unfinished (1 search)")
    assert "No result for L2 regularization (no finished trial (1 interrupted): no result)" in md
    t1 = pd.read_csv(exp / "analysis" / "table1.csv").set_index("regularizer")
    assert t1.loc["l2", "n_seeds"] == 0 and np.isnan(t1.loc["l2", "val_loss_mean"])
    notes = json.loads((exp / "analysis" / "notes.json").read_text())
    assert notes["state"] == "interrupted"


def test_unfinished_trials_are_never_results_and_stopped_ones_are(tmp_path):
    """A generated table where the interrupted and the running trial have the lowest validation
    loss: best_per_regularizer (the one rule) passes them over; an ASHA-stopped trial competes."""
    from study.trial_table import best_per_regularizer

    d = make_experiment(tmp_path / "e", regularizers=("none", "l2"), n_search=3, confirm=False, failures=False,
                        max_epochs=6)
    table = pd.read_parquet(d / "trials.parquet")
    ids = sorted(table[table.regularizer == "l2"].trial_id.unique())
    table.loc[table.trial_id == ids[0], "status"] = "interrupted"
    table.loc[table.trial_id == ids[1], "status"] = "running"
    table.loc[table.trial_id == ids[2], "status"] = "stopped"
    for tid, v in ((ids[0], 0.01), (ids[1], 0.02), (ids[2], 0.5)):
        table.loc[table.trial_id == tid, "val_loss"] = v
    best = best_per_regularizer(table).set_index("regularizer")
    assert best.loc["l2", "trial_id"] == ids[2]
    table.loc[table.trial_id == ids[2], "status"] = "interrupted"
    assert "l2" not in set(best_per_regularizer(table).regularizer)


def test_running_experiment_is_said_to_be_running(analysed, tmp_path, capsys):
    exp = tmp_path / "live"
    shutil.copytree(analysed, exp)
    with experiment_lock.acquire(exp, "python -m study.run --name live"):
        assert summarize_cli.main([str(exp), "--no-figures", "--n-boot", "100"]) == 0
    err = capsys.readouterr().err
    assert f"experiment {exp}: running: a driver is running it now (pid {os.getpid()} on host" in err, err
    assert "these numbers are not final" in err
