"""Bad input to `python -m study.run`: one line naming the problem, exit 2, nothing started."""
from __future__ import annotations

import pytest

from study.run import main

SPACE_OK = "fixed: {regularizer: l2_dropout, epochs: 2}\nsearch:\n  lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-2}\n"


@pytest.mark.parametrize("yaml_text,message", [
    ("fixed: [unclosed", "malformed YAML"),
    ("bogus: 1\n", "bogus: unknown key; allowed: description, fixed, search, sweep"),
    ("fixed: {epochz: 3}\n", "fixed.epochz: unknown setting"),
    ("search:\n  lr: {dist: gaussian, low: 0, high: 1}\n", "search.lr.dist: unknown distribution 'gaussian'; allowed: uniform"),
    ("search:\n  lr: {dist: uniform, low: 0.1, high: 0.1}\n", r"search.lr: low \(0.1\) must be < high \(0.1\)"),
    ("search:\n  lr: {dist: loguniform, low: 0, high: 0.1}\n", "search.lr.low: log scale needs low > 0"),
    ("fixed: {regularizer: dropout}\nsearch:\n  dropout: {dist: uniform, low: 0.0, high: 1.0}\n",
     r"search.dropout: dropout: 1.0 is out of range; allowed: \[0.0, 1.0\)"),
    ("fixed: {regularizer: l2}\nsearch:\n  l2: {dist: uniform, low: -0.1, high: 0.1}\n", "search.l2: l2: -0.1 is out of range"),
    ("fixed: {regularizer: augment, contrast_lo: 1.3}\n", "fixed: contrast_lo/contrast_hi: range reversed"),
    ("fixed: {regularizer: augment}\nsearch:\n  saturation_lo: {dist: uniform, low: -0.5, high: 0.5}\n",
     "search.saturation_lo: saturation_lo: -0.5 is out of range"),
    ("fixed: {batch_size: 0}\n", "fixed: batch_size: 0 is out of range; allowed: >= 1"),
    ("fixed: {regularizer: none}\nsearch:\n  dropout: {dist: uniform, low: 0.1, high: 0.5}\n",
     "dropout: has no effect with regularizer 'none'"),
    ("search:\n  regularizer: {dist: conditional, choices: {lasso: {}}}\n", "regularizer: unknown value 'lasso'"),
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
    (["--space", "nope"], "unknown space 'nope'; available: all, augment, dropout, l2, l2_dropout, none, pos_all"),
    (["--space", "l2", "--set", "regularizer=lasso"], "regularizer: unknown value 'lasso'"),
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
    for name in ("none", "l2", "dropout", "augment", "l2_dropout", "all", "pos_none", "pos_l2_dropout", "pos_all"):
        assert any(line.split()[0] == name and len(line.split()) > 3 for line in out.splitlines()), name


@pytest.mark.parametrize("args,message", [
    (["--resume", "--max-epochs", "5"], "epochs=5: experiment 'old' was run with epochs=3; a resumed or "
                                        "confirmed experiment keeps its settings"),
    (["--resume", "--set", "lr_schedule=cosine"], "lr_schedule=cosine: experiment 'old' was run with "
                                                   "lr_schedule=constant"),
    (["--resume", "--space", "dropout"], "--space dropout: experiment 'old' was run with space 'l2'"),
    (["--confirm-only"], "--confirm-only needs --confirm-seeds"),
    (["--confirm-only", "--confirm-seeds", "2", "--data", "/no/such.zip"], "data not found: /no/such.zip"),
    (["--resume", "--reduction-factor", "1"], "--reduction-factor: 1.0 is out of range; allowed: > 1"),
    (["--resume", "--cpus-per-trial", "0"], "--cpus-per-trial must be > 0"),
    (["--resume", "--confirm-seeds", "-1"], "--confirm-seeds: -1 is out of range; allowed: >= 0"),
])
def test_resume_and_confirm_keep_the_experiment_settings(tmp_path, capsys, args, message):
    exp = tmp_path / "results" / "old"
    exp.mkdir(parents=True)
    (exp / "experiment.json").write_text(
        '{"space": "l2", "fixed": {"regularizer": "l2", "epochs": 3, "classes": 4}, "searched": ["lr", "l2"]}')
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
