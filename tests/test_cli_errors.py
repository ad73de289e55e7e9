"""Bad input to `python -m study.run`: one line naming the problem, exit 2, nothing started."""
from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from datagen import BAD_DATA, make_bad_data, make_tiny_imagenet, wnid

from study.run import main
from study.spaces import available

SPACE_OK = "fixed: {regularizer: l2_dropout, epochs: 2}\nsearch:\n  lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-2}\n"


@pytest.mark.parametrize("yaml_text,message", [
    ("fixed: [unclosed", "malformed YAML"),
    ("bogus: 1\n", "bogus: unknown key; allowed: description, fixed, search, compare, grid, sweep"),
    ("fixed: {epochz: 3}\n", "fixed.epochz: unknown setting"),
    ("search:\n  lr: {dist: gaussian, low: 0, high: 1}\n", "search.lr.dist: unknown distribution 'gaussian'; allowed: uniform"),
    ("search:\n  lr: {dist: uniform, low: 0.1, high: 0.1}\n", r"search.lr: low \(0.1\) must be < high \(0.1\)"),
    ("search:\n  lr: {dist: loguniform, low: 0, high: 0.1}\n", "search.lr.low: log scale needs low > 0"),
    ("fixed: {regularizer: dropout}\nsearch:\n  dropout: {dist: uniform, low: 0.0, high: 1.0}\n",
     r"search.dropout: dropout: 1.0 is out of range; allowed: \[0, 1\)"),
    ("fixed: {regularizer: l2}\nsearch:\n  l2: {dist: uniform, low: -0.1, high: 0.1}\n", "search.l2: l2: -0.1 is out of range"),
    ("fixed: {regularizer: augment, contrast_lo: 1.3}\n", "fixed: contrast_lo/contrast_hi: range reversed"),
    ("fixed: {regularizer: augment}\nsearch:\n  saturation_lo: {dist: uniform, low: -0.5, high: 0.5}\n",
     "search.saturation_lo: saturation_lo: -0.5 is out of range"),
    ("fixed: {batch_size: 0}\n", re.escape("fixed: batch_size: 0 is out of range; allowed: [1, inf) (integer)")),
    ("fixed: {regularizer: none}\nsearch:\n  dropout: {dist: uniform, low: 0.1, high: 0.5}\n",
     "dropout: has no effect with regularizer 'none'"),
    ("search:\n  regularizer: {dist: conditional, choices: {lasso: {}}}\n", "regularizer: unknown technique 'lasso'"),
])
def test_bad_space_file_exits_2_naming_file_and_key(tmp_path, capsys, yaml_text, message):
    path = tmp_path / "myspace.yaml"
    path.write_text(yaml_text)
    rc = main(["--space", str(path), "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: myspace.yaml: ") and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "results").exists()  # nothing started


@pytest.mark.parametrize("args,message", [
    (["--space", "nope"], f"unknown space 'nope'; available: {', '.join(available())}"),
    (["--space", "l2", "--set", "regularizer=lasso"], "regularizer: unknown technique 'lasso'"),
    (["--space", "l2", "--set", "epochz=3"], "--set epochz: unknown setting"),
    (["--space", "l2", "--max-epochs", "0"], "epochs: 0 is out of range"),
    (["--space", "l2", "--set", "model=resnet"], "model: unknown value 'resnet'"),
    (["--space", "pos_none", "--set", "corpus=wikipedia"], "corpus: unknown value 'wikipedia'"),
    (["--space", "l2", "--set", "task=speech"], "task: unknown value 'speech'"),
    (["--space", "l2", "--num-samples", "0"], "--num-samples: 0 is out of range"),
    (["--space", "l2", "--data", "/no/such/data.zip"], "data not found: /no/such/data.zip"),
    (["--space", "l2", "--resume", "--name", "ghost"], "no experiment 'ghost'"),
])
def test_bad_command_line_exits_2(tmp_path, capsys, args, message):
    rc = main(args + ["--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_existing_experiment_is_not_overwritten(tmp_path, capsys):
    exp = tmp_path / "results" / "mine"
    exp.mkdir(parents=True)
    (exp / "experiment.json").write_text("{}")
    (exp / "trials.parquet").write_bytes(b"precious")
    rc = main(["--space", "l2", "--name", "mine", "--results-dir", str(tmp_path / "results")])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    assert (exp / "trials.parquet").read_bytes() == b"precious"


def test_list_spaces(capsys):
    assert main(["--list-spaces"]) == 0
    out = capsys.readouterr().out
    from study.spaces import available
    assert len(out.splitlines()) == len(available())
    for name in available():  # every shipped space, with its description
        assert any(line.split()[0] == name and len(line.split()) > 3 for line in out.splitlines()), name


@pytest.mark.parametrize("args,message", [
    (["--resume", "--max-epochs", "5"], "epochs=5: experiment 'old' was run with epochs=3; a resumed or "
                                        "confirmed experiment keeps its settings"),
    (["--resume", "--set", "lr_schedule=cosine"], "lr_schedule=cosine: experiment 'old' was run with "
                                                   "lr_schedule=constant"),
    (["--resume", "--space", "dropout"], "--space dropout: experiment 'old' was run with space 'l2'"),
    (["--confirm-only"], "--confirm-only needs --confirm-seeds"),
    (["--confirm-only", "--confirm-seeds", "2", "--data", "/no/such.zip"], "data not found: /no/such.zip"),
    (["--resume", "--reduction-factor", "1"], "--reduction-factor: 1.0 is out of range; allowed: (1, inf)"),
    (["--resume", "--cpus-per-trial", "0"], "--cpus-per-trial: 0.0 is out of range; allowed: (0, inf)"),
    (["--resume", "--confirm-seeds", "-1"], "--confirm-seeds: -1 is out of range; allowed: [0, inf) (integer)"),
    (["--resume", "--num-samples", "9"], "--num-samples 9: experiment 'old' was run with num_samples=4"),
    (["--confirm-only", "--confirm-seeds", "2", "--seed", "1"], "--seed 1: experiment 'old' was run with seed=0"),
    (["--resume", "--grace-period", "2", "--num-samples", "4"], "--grace-period 2: experiment 'old' was run "
                                                                 "with grace_period=1"),
])
def test_resume_and_confirm_keep_the_experiment_settings(tmp_path, capsys, args, message):
    exp = tmp_path / "results" / "old"
    exp.mkdir(parents=True)
    (exp / "experiment.json").write_text(
        '{"space": "l2", "fixed": {"regularizer": "l2", "epochs": 3, "classes": 4}, "searched": ["lr", "l2"], '
        '"search": {"num_samples": 4, "grace_period": 1, "reduction_factor": 2.0, "seed": 0}}')
    rc = main(args + ["--name", "old", "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in exp.iterdir()) == ["experiment.json"]  # nothing started


@pytest.mark.parametrize("args,message", [
    (["--resume"], "--resume needs the --name of an existing experiment"),
    (["--confirm-only", "--confirm-seeds", "3", "--name", "ghost"], "no experiment 'ghost'"),
])
def test_continuing_needs_an_existing_experiment(tmp_path, capsys, args, message):
    rc = main(args + ["--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert not (tmp_path / "results").exists()


# --- bad data, an unreachable cluster, credentials: through the same command ----------------------
def _data_case(case: str, tmp_path: Path, http_url: str, www: Path) -> list[str]:
    path = tmp_path / "x.zip"
    if case in BAD_DATA:
        make_bad_data(path, case)
    elif case == "unknownclass":
        make_tiny_imagenet(path)
        return ["--data", str(path), "--set", f"class_list=n99999999,{wnid(1)}"]
    elif case == "checksum":
        make_tiny_imagenet(www / "tiny-imagenet-200.zip")
        return ["--set", f"download_url={http_url}/tiny-imagenet-200.zip", "--set", "download_md5=" + "0" * 32,
                "--set", f"cache_dir={tmp_path / 'cache'}"]
    elif case == "nocorpus":
        (tmp_path / "nltk").mkdir()
        return ["--space", "pos_none", "--nltk-data", str(tmp_path / "nltk")]
    return ["--data", str(path)]


@pytest.mark.parametrize("case,message", [
    ("notzip", "not a zip archive"),
    ("wronglayout", "not Tiny ImageNet's layout"),
    ("emptyclass", "has no training images"),
    ("corrupt", f"corrupt image .*x.zip:tiny-imagenet-200/train/{wnid(1)}/images/{wnid(1)}_3.JPEG"),
    ("unknownclass", "n99999999"),
    ("checksum", "checksum mismatch"),
    ("nocorpus", "treebank, universal_tagset not found.*python -m nltk.downloader"),
])
def test_bad_data_exits_2_before_any_ray_process(tmp_path, capsys, monkeypatch, http_dir, case, message):
    monkeypatch.setenv("REGSTUDY_OFFLINE", "1")
    monkeypatch.setenv("REGSTUDY_CACHE", str(tmp_path / "cache"))
    from study import cluster
    monkeypatch.setattr(cluster, "connect", lambda *a, **k: pytest.fail("a Ray cluster was started for bad data"))
    www, url = http_dir
    args = ["--space", "none", *_data_case(case, tmp_path, url, www)]
    rc = main(args + ["--results-dir", str(tmp_path / "results"), "--classes", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "results").exists()


def test_unreachable_address_exits_2_at_once(tmp_path, capsys, tiny_zip):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    rc = main(["--space", "none", "--data", str(tiny_zip), "--address", f"127.0.0.1:{port}",
               "--results-dir", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}: Connection refused" in err
    assert time.monotonic() - t0 < 30 and not (tmp_path / "results").exists()
    rc = main(["--space", "none", "--address", "nonsense", "--results-dir", str(tmp_path / "results")])
    assert rc == 2 and "--address nonsense: expected HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("via_env", [False, True])
def test_storage_password_never_shown(tmp_path, capsys, monkeypatch, via_env):
    url = "postgresql://study:s3cr3t-pw@127.0.0.1:1/optuna"
    args = ["--space", "none", "--results-dir", str(tmp_path / "results")]
    if via_env:
        monkeypatch.setenv("REGSTUDY_OPTUNA_STORAGE", url)
        rc = main(args)
    else:
        rc = main(args + ["--optuna-storage", url])
    out, err = capsys.readouterr()
    assert rc == 2 and "s3cr3t" not in out + err
    assert "--optuna-storage postgresql://study:***@127.0.0.1:1/optuna: cannot open it" in err, err
    assert not (tmp_path / "results").exists()


def test_redact_hides_url_passwords_only():
    from study.redact import redact
    assert redact("--optuna-storage=mysql+pymysql://u:p%40ss@db:3306/x") == "--optuna-storage=mysql+pymysql://u:***@db:3306/x"
    assert redact("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert redact("http://127.0.0.1:8265/") == "http://127.0.0.1:8265/"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
