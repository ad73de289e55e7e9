"""Bad input to the sweep driver (`python -m study.run`), the experiment directory and the trial
table: experiment names that are not one directory name, numeric options out of range, a results
directory that is a file, a space that is a directory, a damaged experiment.json, optuna.db or
Ray Tune state, a deleted trial directory, a moved or copied experiment, a full disk.

Each case runs the user's command (``study.run.main``), on a real local Ray cluster where a sweep
is involved (one cluster for the module), and checks the exit code, the one line that names the
option or file, and that nothing was written or lost."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray

from posgen import make_nltk_data
from study.run import OPTIONS, main

SPACE = """description: tiny POS tagger, learning rate only
fixed: {task: pos, model: rnn, corpus: treebank, tagset: universal, embed_dim: 8, hidden: 8, epochs: 2}
search:
  lr: {dist: loguniform, low: 1.0e-3, high: 1.0e-2}
sweep: {num_samples: 2, grace_period: 2, reduction_factor: 2, seed: 0}
"""


def snapshot(d: Path) -> dict[str, str]:
    """Every file under ``d`` (relative path -> content hash): what "nothing was written" compares."""
    if not d.exists():
        return {}
    return {str(p.relative_to(d)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture()
def no_cluster(monkeypatch):
    """Bad input is answered before any Ray process starts."""
    from study import cluster
    monkeypatch.setattr(cluster, "connect", lambda *a, **k: pytest.fail("a Ray cluster was started"))


# --- refused before anything starts ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["../escape", "a/b", ".", "..", "x/../../y", "/abs"])
@pytest.mark.parametrize("resume", [False, True])
def test_experiment_name_is_one_directory_name(tmp_path, capsys, no_cluster, name, resume):
    results = tmp_path / "R"
    results.mkdir()
    rc = main(["--space", "none", "--name", name, "--results-dir", str(results)] + (["--resume"] if resume else []))
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith(f"error: --name {name!r}: an experiment name is one plain directory name")
    assert snapshot(tmp_path) == {} and sorted(p.name for p in tmp_path.iterdir()) == ["R"]


def test_a_space_name_that_is_no_directory_name_is_refused(tmp_path, capsys, no_cluster):
    space = tmp_path / "...yaml"  # its name (the default --name) would be ".."
    space.write_text(SPACE)
    rc = main(["--space", str(space), "--results-dir", str(tmp_path / "R")])
    assert rc == 2 and "--name (default: the space's) '..': an experiment name is one plain directory name" \
        in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "R").exists()


@pytest.mark.parametrize("option,value,shown,allowed", [
    ("--max-failures", "-1", "-1", "[0, inf) (integer)"),  # (Ray Tune: retry forever)
    ("--table-refresh-s", "-1", "-1.0", "[0, inf)"),
    ("--table-refresh-s", "nan", "nan", "[0, inf)"),
    ("--table-refresh-s", "inf", "inf", "[0, inf)"),
    ("--cpus-per-trial", "nan", "nan", "(0, inf)"),  # (Ray waited for resources that never came)
    ("--cpus-per-trial", "0", "0.0", "(0, inf)"),
    ("--gpus-per-trial", "-0.5", "-0.5", "[0, inf)"),
    ("--gpus-per-trial", "inf", "inf", "[0, inf)"),
    ("--reduction-factor", "inf", "inf", "(1, inf)"),
    ("--reduction-factor", "1", "1.0", "(1, inf)"),
    ("--num-cpus", "0", "0", "[1, inf) (integer)"),
    ("--seed", "-1", "-1", "[0, 4294967295] (integer)"),
    ("--seed", "4294967296", "4294967296", "[0, 4294967295] (integer)"),
    ("--max-concurrent", "0", "0", "[1, inf) (integer)"),
    ("--grace-period", "0", "0", "[1, inf) (integer)"),
    ("--num-samples", "0", "0", "[1, inf) (integer)"),
    ("--confirm-seeds", "-2", "-2", "[0, inf) (integer)"),
    ("--confirm-top-k", "0", "0", "[1, inf) (integer)"),
])
def test_numeric_options_out_of_range(tmp_path, capsys, no_cluster, option, value, shown, allowed):
    rc = main(["--space", "none", option, value, "--results-dir", str(tmp_path / "R")])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and line == f"error: {option}: {shown} is out of range; allowed: {allowed}", line
    assert not (tmp_path / "R").exists()


def test_every_numeric_option_has_a_range():
    from study.run import parser
    numeric = {a.option_strings[0] for a in parser()._actions if a.type in (int, float)}
    settings = {"--classes", "--max-epochs"}  # trial settings: study.config's ranges (classes, epochs)
    assert numeric - settings == set(OPTIONS)
    for name, st in OPTIONS.items():  # the table's defaults are the parser's; each in its range
        default = parser().get_default(name[2:].replace("-", "_"))
        assert (default is None and st.default != st.default) or default == st.default, name
        if default is not None:
            st.check(default)


@pytest.mark.parametrize("where", ["file", "below_file", "exp_is_file"])
def test_results_dir_that_is_a_file(tmp_path, capsys, no_cluster, where):
    f = tmp_path / "plain"
    f.write_text("not a directory")
    results = {"file": f, "below_file": f / "sub", "exp_is_file": tmp_path}[where]
    name = "plain" if where == "exp_is_file" else "e"
    t0 = time.monotonic()
    rc = main(["--space", "none", "--name", name, "--results-dir", str(results)])
    line = one_error_line(capsys.readouterr().err)
    expected = {"file": f"--results-dir {f}: is a file, not a directory",
                "below_file": f"--results-dir {f / 'sub'}: {f} is a file, not a directory",
                "exp_is_file": f"experiment directory {f}: is a file, not a directory"}[where]
    assert rc == 2 and line == f"error: {expected}", line
    assert time.monotonic() - t0 < 10 and f.read_text() == "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_space_that_is_a_directory(tmp_path, capsys, no_cluster):
    d = tmp_path / "dir.yaml"
    d.mkdir()
    rc = main(["--space", str(d), "--results-dir", str(tmp_path / "R")])
    assert rc == 2 and one_error_line(capsys.readouterr().err) == (
        f"error: --space {d}: is a directory, not a space file (a YAML file, or a name from --list-spaces)")
    assert not (tmp_path / "R").exists()


@pytest.mark.parametrize("text,message", [
    ('{"space": "none", ', "not valid JSON (line 1 column 19: Expecting property name enclosed in double quotes)"),
    ("[1, 2]", "expected a JSON object (the record of the experiment), got list"),
    ('{"space": "none", "fixed": [1]}', "fixed: expected a JSON object, got list"),
])
@pytest.mark.parametrize("command", [["--resume"], ["--confirm-only", "--confirm-seeds", "1"]])
def test_damaged_experiment_json(tmp_path, capsys, no_cluster, text, message, command):
    exp = tmp_path / "R" / "old"
    exp.mkdir(parents=True)
    (exp / "experiment.json").write_text(text)
    before = snapshot(tmp_path)
    rc = main(command + ["--name", "old", "--results-dir", str(tmp_path / "R")])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith(f"error: {exp / 'experiment.json'}: {message}"), line
    assert snapshot(tmp_path) == before


def test_moved_legacy_experiment_is_not_resumed_from_the_recorded_path(tmp_path, capsys, no_cluster,
                                                                      legacy_experiment):
    """The old experiment's Ray Tune state names where it was recorded: a copy elsewhere must not
    write there: one line saying where it was recorded and what to do."""
    recorded = legacy_experiment[0]
    recorded_root = recorded.parent
    there = (recorded_root.exists(), snapshot(recorded_root))
    copy = tmp_path / "moved" / "legacy"
    shutil.copytree(recorded, copy)
    before = snapshot(copy)
    rc = main(["--resume", "--name", "legacy", "--results-dir", str(copy.parent), "--nltk-data", str(tmp_path)])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and line == (
        f"error: experiment 'legacy' was recorded at {recorded}, and Ray Tune's saved state "
        f"(ray/search/tuner.pkl) refers to that path: it cannot be continued from {copy}. Move it back to "
        f"{recorded} (or make {recorded} a symlink to {copy}) and run the command again; the analysis "
        "reads it where it is"), line
    assert snapshot(copy) == before and (recorded_root.exists(), snapshot(recorded_root)) == there


def test_analysis_of_a_copied_legacy_experiment_reads_the_copys_database(tmp_path, legacy_experiment):
    """An old record names its optuna.db by the absolute path it was written at; a copy reads its
    own, even where the original still exists."""
    from analysis.loading import load_study, study_storage
    recorded = legacy_experiment[0]
    copy = tmp_path / "copy" / "legacy"
    shutil.copytree(recorded, copy)
    original = tmp_path / "original.db"  # stands in for the original's database, with another study
    optuna.create_study(study_name="legacy", storage=f"sqlite:///{original}")
    stored = json.loads((copy / "experiment.json").read_text())["optuna_storage"]
    assert stored == f"sqlite:///{recorded}/optuna.db"
    assert study_storage(copy) == f"sqlite:///{copy}/optuna.db"
    assert len(load_study(copy).trials) == 3  # the old experiment's three (the stand-in has none)


# --- a real experiment on the module's Ray cluster ----------------------------------------------
@pytest.fixture(scope="module")
def pos(tmp_path_factory) -> tuple[Path, Path]:
    """(space file, NLTK data directory) of a sweep that takes seconds."""
    d = tmp_path_factory.mktemp("pos")
    (d / "tiny.yaml").write_text(SPACE)
    return d / "tiny.yaml", make_nltk_data(d / "nltk", "treebank", n=40)


def sweep_args(pos, results: Path | str, name: str = "e") -> list[str]:
    space, nltk = pos
    return ["--space", str(space), "--nltk-data", str(nltk), "--name", name, "--results-dir", str(results),
            "--max-concurrent", "1", "--table-refresh-s", "0"]


@pytest.fixture(scope="module")
def experiment(cluster, pos, tmp_path_factory):
    """A finished 2-trial experiment, created through a results dir given with '..': (its directory,
    what the driver printed). The tests below change it in place, in order."""
    root = tmp_path_factory.mktemp("exp")
    (root / "elsewhere").mkdir()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # (capsys is per test)
        rc = main(sweep_args(pos, root / "elsewhere" / ".." / "R"))
    assert rc == 0, out.getvalue()[-3000:]
    return root / "R" / "e", out.getvalue()


def test_the_printed_experiment_dir_is_where_the_files_are(experiment):
    exp, out = experiment
    assert f"experiment 'e': {exp} (space 'tiny'" in out
    assert f"Optuna study 'e' in sqlite:///{exp}/optuna.db" in out
    assert {"experiment.json", "trials.parquet", "optuna.db", "statuses.json"} <= {p.name for p in exp.iterdir()}
    assert not (exp.parent.parent / "elsewhere" / "e").exists()
    meta = json.loads((exp / "experiment.json").read_text())
    # self-contained: the default storage is recorded relative to the experiment directory; the
    # place Ray Tune's pickles refer to is recorded per phase
    assert meta["optuna_storage"] == "sqlite:///optuna.db" and meta["settings"]["optuna_storage"] == "sqlite:///optuna.db"
    assert meta["tune_state_at"] == {"search": str(exp)}
    assert pd.read_parquet(exp / "trials.parquet").trial_id.nunique() == 2


def test_copied_experiment_analyses_its_own_database_and_refuses_resume(experiment, pos, tmp_path, capsys):
    exp, _ = experiment
    copy = tmp_path / "backup" / "e"
    shutil.copytree(exp, copy)
    before = {"original": snapshot(exp), "copy": snapshot(copy)}
    optuna.delete_study(study_name="e", storage=f"sqlite:///{exp}/optuna.db")  # the original's study goes
    before["original"] = snapshot(exp)

    from analysis.summarize import main as summarize
    assert summarize([str(copy), "--n-boot", "100", "--no-figures"]) == 0
    assert f"note: Optuna study 'e' read from sqlite:///{copy}/optuna.db" in capsys.readouterr().out

    rc = main(sweep_args(pos, copy.parent) + ["--resume"])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith(f"error: experiment 'e' was recorded at {exp}, and Ray Tune's saved state "
                                       f"(ray/search/tuner.pkl) refers to that path: it cannot be continued from "
                                       f"{copy}. Move it back to {exp} (or make {exp} a symlink to {copy})"), line
    assert snapshot(exp) == before["original"]
    assert {k: v for k, v in snapshot(copy).items() if not k.startswith("analysis/")} == before["copy"]

    # a confirmation phase that has not started is bound to no place: it runs in the copy, from
    # the copy's table, and writes there only
    assert main(sweep_args(pos, copy.parent) + ["--confirm-only", "--confirm-seeds", "1"]) == 0
    table = pd.read_parquet(copy / "trials.parquet")
    assert table[table.phase == "confirm"].trial_id.nunique() == 1 and table.trial_id.nunique() == 3
    assert json.loads((copy / "experiment.json").read_text())["tune_state_at"] == {"search": str(exp),
                                                                                  "confirm": str(copy)}
    assert snapshot(exp) == before["original"]
    shutil.copy2(copy / "optuna.db", exp / "optuna.db")  # (the original back as it was, for the tests below)


@pytest.mark.parametrize("damage,message", [
    ("garbage", "error: experiment 'e': its Optuna study in sqlite:///{exp}/optuna.db: cannot open it: "
                "(sqlite3.DatabaseError) file is not a database"),
    ("missing", "error: experiment 'e': its Optuna study in sqlite:///{exp}/optuna.db: the file is missing; "
                "the search cannot continue without its history"),
    ("empty_study", "error: experiment 'e': its Optuna study in sqlite:///{exp}/optuna.db: it holds no study 'e' "
                    "(it has: 'other')"),
])
def test_resume_with_a_damaged_optuna_db(experiment, pos, capsys, no_cluster, damage, message):
    exp, _ = experiment
    db = exp / "optuna.db"
    saved = db.read_bytes()
    try:
        if damage == "garbage":
            db.write_bytes(b"\x00not sqlite\x00" * 300)
        elif damage == "missing":
            db.unlink()
        else:
            db.unlink()
            optuna.create_study(study_name="other", storage=f"sqlite:///{db}")
        before = snapshot(exp)
        t0 = time.monotonic()
        rc = main(sweep_args(pos, exp.parent) + ["--resume"])
        line = one_error_line(capsys.readouterr().err)
        assert rc == 2 and line.startswith(message.format(exp=exp)), line
        assert snapshot(exp) == before and time.monotonic() - t0 < 15  # (no resume entry appended)
    finally:
        db.write_bytes(saved)


def test_resume_with_damaged_ray_tune_state(experiment, pos, capsys):
    """A state file that Tune wrote in part (the disk filled while it copied it in place): Tune
    would start the phase over beside the trials that ran. The driver says so and stops, naming
    the whole copy Tune keeps in its session directory; with that copied back, --resume works."""
    exp, _ = experiment
    state = sorted((exp / "ray" / "search").glob("experiment_state-*.json"))[-1]
    saved = state.read_bytes()
    state.write_bytes(saved[: len(saved) // 2])
    before = snapshot(exp)
    rc = main(sweep_args(pos, exp.parent) + ["--resume"])
    line = one_error_line(capsys.readouterr().err)
    assert rc == 2 and line.startswith(
        "error: experiment 'e': Ray Tune's saved state is damaged, cut short (was the disk full when it was "
        f"written?): ray/search/{state.name} ({len(saved) // 2} bytes); the search phase cannot be continued as "
        f"it is; its trials so far are in {exp / 'trials.parquet'} and ray/search/. Ray Tune's own copies are "
        "whole in "), line
    assert snapshot(exp) == before
    restore_tune_state(line, exp / "ray" / "search")
    assert state.read_bytes() == saved
    assert main(sweep_args(pos, exp.parent) + ["--resume"]) == 0
    assert pd.read_parquet(exp / "trials.parquet").trial_id.nunique() == 2


def restore_tune_state(line: str, phase_dir: Path) -> None:
    """What the message says to do: copy Tune's whole state files into the phase's directory."""
    assert "Ray Tune's saved state is damaged" in line and "Ray Tune's own copies are whole in " in line, line
    staged = Path(line.split("own copies are whole in ", 1)[1].split(": copy its state files")[0])
    patterns = line.split("copy its state files (", 1)[1].split(")", 1)[0].split(", ")
    assert "callback-states-*" in patterns  # (the sweep's callbacks keep state: the progress metrics)
    for pattern in patterns:
        for f in staged.glob(pattern):
            shutil.copy(f, phase_dir / f.name)


def test_resume_after_a_trial_directory_was_deleted_keeps_its_rows(experiment, pos, capsys):
    """The trial table is the record of the experiment: a refresh never drops the rows it holds.
    The lost trial's rows stay as they were, marked trial_dir_missing."""
    exp, _ = experiment
    before = pd.read_parquet(exp / "trials.parquet")
    assert before.trial_id.nunique() == 2 and not before.trial_dir_missing.any()
    gone = before.trial_id.iloc[0]
    shutil.rmtree(exp / "ray" / "search" / f"trial_{gone.removeprefix('search-')}")

    # A fresh Ray session, as a new driver process has: within the session that ran the trial,
    # Tune would copy its result files back from the session's staging directory.
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rc = main(sweep_args(pos, exp.parent) + ["--resume"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    after = pd.read_parquet(exp / "trials.parquet")
    assert after.trial_id.nunique() == 2 and len(after) == len(before)
    lost = after[after.trial_id == gone]
    assert lost.trial_dir_missing.all() and not after[after.trial_id != gone].trial_dir_missing.any()
    cols = [c for c in before.columns if c != "trial_dir_missing"]
    pd.testing.assert_frame_equal(lost[cols].reset_index(drop=True),
                                  before[before.trial_id == gone][cols].reset_index(drop=True))
    assert f"warning: 1 trial(s) of the table have no trial directory any more ({gone})" in err
    assert set(json.loads((exp / "statuses.json").read_text())["search"].values()) == {"done"}
    assert pd.read_csv(exp / "summary.csv").trial_id.nunique() == 2
    meta = json.loads((exp / "experiment.json").read_text())
    assert meta["search_trials_by_status"] == {"completed": 2} and "--resume" in meta["commands"][-1]["argv"]


# --- a full disk under the results directory ------------------------------------------------------
@pytest.fixture()
def small_disk(tmp_path):
    """A 1 MiB tmpfs (a real filesystem that fills up); needs root and mount(8)."""
    d = tmp_path / "disk"
    d.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs root to mount a tmpfs (the injected faults: test_faults.py)")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def fill(disk: Path, leave_kib: int) -> Path:
    ballast = disk / f"ballast-{uuid.uuid4().hex}"
    free = shutil.disk_usage(disk).free
    with open(ballast, "wb") as f:
        f.write(b"\0" * max(0, free - leave_kib * 1024))
    return ballast


def test_full_disk_exits_1_with_one_line_and_resumes_after_space_is_freed(cluster, pos, small_disk, capsys):
    """The disk fills as the Optuna study is created: `error: cannot write the results under ...`,
    exit 1; experiment.json stays whole; with space freed, --resume runs the sweep to its end."""
    ballast = fill(small_disk, 120)
    exp = small_disk / "e"
    rc = main(sweep_args(pos, small_disk))
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith(f"error: cannot write the results under {exp}: No space left on device"), err
    assert last.endswith("Free space, then continue with --resume.") and "Traceback" not in err
    meta = json.loads((exp / "experiment.json").read_text())
    assert meta["optuna_storage"] == "sqlite:///optuna.db" and not (exp / "driver.lock").exists()

    ballast.unlink()
    rc = main(sweep_args(pos, small_disk) + ["--resume"])
    assert rc == 0, capsys.readouterr().err[-3000:]
    table = pd.read_parquet(exp / "trials.parquet")
    assert table.trial_id.nunique() == 2 and set(table.status) == {"completed"}
    assert len(json.loads((exp / "experiment.json").read_text())["commands"]) == 2


def test_full_disk_while_trials_run(cluster, pos, small_disk, capsys):
    """The disk fills while trials checkpoint and Tune and Optuna record them: whatever raises in
    the driver (Optuna's SQLite, an EOFError from a pickle Tune wrote in part), the answer is one
    line and exit 1. After space is freed, --resume either continues, or (Tune's own state was
    cut short) says so in one line with the whole copy to put back, and then continues."""
    ballast = fill(small_disk, 300)
    exp = small_disk / "e"
    rc = main(sweep_args(pos, small_disk))
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert rc == 1 and last.startswith(f"error: cannot write the results under {exp}: No space left on device"), err
    json.loads((exp / "experiment.json").read_text())
    if (exp / "trials.parquet").exists():
        assert pd.read_parquet(exp / "trials.parquet").trial_id.nunique() >= 1
    ballast.unlink()
    rc = main(sweep_args(pos, small_disk) + ["--resume"])
    err = capsys.readouterr().err
    if rc == 2:
        restore_tune_state(one_error_line(err), exp / "ray" / "search")
        rc = main(sweep_args(pos, small_disk) + ["--resume"])
        err = capsys.readouterr().err
    assert rc == 0, err[-3000:]
    table = pd.read_parquet(exp / "trials.parquet")
    assert table.trial_id.nunique() == 2 and not table.duplicated(["trial_id", "epoch"]).any()
    assert set(table.status) == {"completed"}
