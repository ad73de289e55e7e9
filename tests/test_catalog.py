"""The regularizer catalog as users meet it: combinations and aliases, the validation errors (their
key and allowed values), and the same errors and the catalog listing through both commands.

Technique names come from study.regularizers; the few names written here are the documented
examples (the study's ensemble, the incompatible pairs), checked against the registry as well."""
from __future__ import annotations

import itertools
import math
import re

import pytest

import study.run
import study.train_once
from study import regularizers, tasks
from study.config import ConfigError, make_config
from study.regularizers import ALIASES, TECHNIQUES, CatalogError


def supported_models(t: regularizers.Technique, task: str) -> list[str]:
    return [m for m, spec in tasks.get(task).models.items() if set(t.model_hooks) <= spec.accepts]


def home(t: regularizers.Technique) -> dict:
    """A task and model where the technique runs (its first task, the first model that supports it)."""
    task = t.tasks[0]
    return {"task": task, "model": supported_models(t, task)[0], "regularizer": t.name}


def allowed_list(message: str, after: str) -> list[str]:
    """The comma-separated names that follow ``after`` in a message (up to ';', ' (' or the end)."""
    tail = message.split(after, 1)[1]
    return [x.strip() for x in re.split(r";| \(", tail)[0].split(",")]


# --- combinations and aliases ----------------------------------------------------------------------
def test_the_ensemble_alias_and_both_orders_give_one_config():
    cfgs = [make_config({"regularizer": r}) for r in ("l2+dropout", "dropout+l2", "l2_dropout", " dropout + l2 ")]
    assert all(c == cfgs[0] for c in cfgs)
    cfg = cfgs[0]
    assert cfg.regularizer == "l2+dropout"
    # the ensemble's own dropout (0.2), not dropout's default when alone
    assert cfg.strengths == {"l2": 1.5e-4, "dropout": 0.2} == dict(ALIASES["l2_dropout"].defaults)
    assert make_config({"regularizer": "dropout"}).strengths["dropout"] == TECHNIQUES["dropout"].defaults()["dropout"] != 0.2
    assert cfg.combination.uses("l2") and cfg.combination.uses("dropout") and not cfg.combination.uses("none")
    assert make_config(cfg.to_dict()) == cfg
    for r in ("dropout+l2", "l2_dropout"):
        assert regularizers.canonical(r) == "l2+dropout"
        assert regularizers.label(r) == ALIASES["l2_dropout"].label


def test_given_strengths_override_the_alias_defaults():
    for r in ("l2_dropout", "dropout+l2", "l2+dropout"):
        assert make_config({"regularizer": r, "dropout": "0.5"}).strengths == {"l2": 1.5e-4, "dropout": 0.5}
        assert make_config({"regularizer": r, "l2": 1e-3, "dropout": 0}).strengths == {"l2": 1e-3, "dropout": 0.0}


@pytest.mark.parametrize("value,named", [
    ("mixup+cutmix", ("mixup", "cutmix")),
    ("dropout+max_dropout", ("dropout", "max_dropout")),
    ("none+l2", ("none", "l2")),
    ("l2+l2", ("l2",)),
    ("l2_dropout+dropout", ("dropout",)),
])
def test_incompatible_combinations_name_both(value, named):
    with pytest.raises(ConfigError) as e:
        make_config({"regularizer": value})
    msg = str(e.value)
    assert msg.startswith("regularizer: ") and all(n in msg for n in named), msg
    if len(named) == 1:
        assert "twice" in msg


def test_every_pair_either_combines_or_the_error_names_both():
    conflicts = 0
    for a, b in itertools.combinations(regularizers.names(), 2):
        try:
            ab = regularizers.parse(f"{a}+{b}")
        except CatalogError as e:
            conflicts += 1
            assert re.search(rf"\b{a}\b", str(e)) and re.search(rf"\b{b}\b", str(e)), str(e)
            with pytest.raises(CatalogError):
                regularizers.parse(f"{b}+{a}")
            continue
        # order does not matter, and a task both belong to builds a config with both strengths
        assert regularizers.parse(f"{b}+{a}").name == ab.name and {x.name for x in ab.techniques} == {a, b}
        for task in set(TECHNIQUES[a].tasks) & set(TECHNIQUES[b].tasks):
            for model in set(supported_models(TECHNIQUES[a], task)) & set(supported_models(TECHNIQUES[b], task)):
                cfg = make_config({"task": task, "model": model, "regularizer": f"{b}+{a}"})
                assert set(cfg.strengths) == set(TECHNIQUES[a].defaults()) | set(TECHNIQUES[b].defaults())
    assert conflicts >= 3  # none+x, mixup+cutmix, dropout+max_dropout at least


# --- validation messages ---------------------------------------------------------------------------
def test_unknown_technique_lists_the_catalog():
    with pytest.raises(ConfigError) as e:
        make_config({"regularizer": "lasso"})
    msg = str(e.value)
    assert msg.startswith("regularizer: unknown technique 'lasso'; allowed: ")
    assert allowed_list(msg, "allowed: ") == regularizers.names() + sorted(ALIASES)
    with pytest.raises(ConfigError, match="unknown technique 'lasso'"):
        make_config({"regularizer": "l2+lasso"})


def _outside(st: regularizers.Setting) -> list[float]:
    """A value just outside each bound (integers: the next integer; an infinite bound: inf)."""
    step = (lambda v, d: v + d) if st.integer else (lambda v, d: math.nextafter(v, d * math.inf))
    low = st.lo if st.lo_open else step(st.lo, -1)
    high = math.inf if st.hi == math.inf else (st.hi if st.hi_open else step(st.hi, 1))
    return [low, high]


def _inside(st: regularizers.Setting) -> list[float]:
    step = (lambda v, d: v + d) if st.integer else (lambda v, d: math.nextafter(v, d * math.inf))
    low = step(st.lo, 1) if st.lo_open else st.lo
    high = 1e300 if st.hi == math.inf else (step(st.hi, -1) if st.hi_open else st.hi)
    return [low, high]


SETTINGS = [(t, st) for t in regularizers.catalog() for st in t.settings]


@pytest.mark.parametrize("t,st", SETTINGS, ids=[st.name for _, st in SETTINGS])
def test_every_strength_is_checked_against_its_range(t, st):
    for value in _outside(st):
        with pytest.raises(ConfigError) as e:
            make_config({**home(t), st.name: value})
        assert re.fullmatch(rf"{st.name}: \S+ is out of range; allowed: {re.escape(st.allowed())}", str(e.value)), \
            str(e.value)
    if t.check is None:  # (a cross-setting rule, e.g. contrast_lo <= contrast_hi, may refuse a bound)
        for value in _inside(st):
            assert make_config({**home(t), st.name: value}).strengths[st.name] == value


def test_allowed_ranges_read_like_intervals():
    assert regularizers.setting("dropout")[1].allowed() == "[0, 1)"
    assert regularizers.setting("mixup_alpha")[1].allowed() == "(0, inf)"
    assert regularizers.setting("cutout_size")[1].allowed() == "[1, inf) (integer)"
    assert regularizers.setting("cutout_holes")[1].allowed() == "[1, 64] (integer)"
    with pytest.raises(ConfigError, match=r"^cutout_size: expected an integer, got 2.5$"):
        make_config({"regularizer": "cutout", "cutout_size": 2.5})


@pytest.mark.parametrize("t,st", SETTINGS, ids=[st.name for _, st in SETTINGS])
def test_a_strength_for_a_technique_not_in_use_is_refused(t, st):
    base = {"task": t.tasks[0], "regularizer": "none"}
    if st.default != st.off:
        with pytest.raises(ConfigError) as e:
            make_config({**base, st.name: st.default})
        assert str(e.value) == f"{st.name}: has no effect with regularizer 'none'; it belongs to {t.name!r}"
    if st.off is not None:  # "no effect" written out is tolerated, and not recorded
        assert make_config({**base, st.name: st.off}).strengths == {}


def test_a_strength_of_another_technique_suggests_the_combination():
    with pytest.raises(ConfigError) as e:
        make_config({"regularizer": "l2", "dropout": 0.3})
    assert str(e.value) == ("dropout: has no effect with regularizer 'l2'; it belongs to 'dropout' "
                            "(e.g. regularizer=l2+dropout)")
    assert make_config({"regularizer": "l2", "dropout": 0}).strengths == {"l2": 1.5e-4}


def test_a_technique_outside_its_tasks_names_the_task_and_its_techniques():
    checked = 0
    for t in regularizers.catalog():
        for task in set(tasks.names()) - set(t.tasks):
            with pytest.raises(ConfigError) as e:
                make_config({"task": task, "regularizer": t.name})
            msg = str(e.value)
            assert msg.startswith(f"regularizer: {t.name} is not for task {task!r} (only {', '.join(t.tasks)})")
            assert allowed_list(msg, f"techniques for {task}: ") == regularizers.names(task)
            if task in t.task_hint:
                assert t.task_hint[task] in msg
            checked += 1
    assert checked >= 5  # the image-only and pos-only techniques
    with pytest.raises(ConfigError, match=r"^regularizer: cutmix is not for task 'pos' \(only image\)"):
        make_config({"task": "pos", "regularizer": "cutmix"})
    with pytest.raises(ConfigError) as e:
        make_config({"task": "pos", "regularizer": "augment"})
    hint = str(e.value).split("; techniques for pos:")[0]
    assert "word_dropout" in hint and "word_dropout" in regularizers.names("pos")


def test_a_technique_the_model_cannot_apply_names_the_models_that_can():
    checked = 0
    for task in tasks.names():
        for t in (TECHNIQUES[n] for n in regularizers.names(task)):
            able = supported_models(t, task)
            for model in set(tasks.get(task).models) - set(able):
                with pytest.raises(ConfigError) as e:
                    make_config({"task": task, "model": model, "regularizer": t.name})
                assert str(e.value) == (f"regularizer: {t.name} is not supported by model {model!r}; "
                                        f"models that support it: {', '.join(able) or '(none)'}")
                checked += 1
            for model in able:
                assert make_config({"task": task, "model": model, "regularizer": t.name}).regularizer == t.name
    assert checked >= 1
    with pytest.raises(ConfigError, match=r"stochastic_depth is not supported by model 'alexnet'; "
                                          r"models that support it: efficientnet_b0$"):
        make_config({"regularizer": "stochastic_depth"})


# --- the same errors through both commands ---------------------------------------------------------
CLI_CASES = {  # case: (train_once args, run args, the message)
    "unknown": (["--regularizer", "lasso"], ["--space", "none", "--set", "regularizer=lasso"],
                r"regularizer: unknown technique 'lasso'; allowed: none, "),
    "range": (["--regularizer", "dropout", "--set", "dropout=1"], ["--space", "dropout", "--set", "dropout=1"],
              r"dropout: 1.0 is out of range; allowed: \[0, 1\)"),
    "range_int": (["--regularizer", "cutout", "--set", "cutout_holes=65"],
                  ["--space", "cutout", "--set", "cutout_holes=65"],
                  r"cutout_holes: 65 is out of range; allowed: \[1, 64\] \(integer\)"),
    "unused": (["--regularizer", "l2", "--set", "dropout=0.3"], ["--space", "l2", "--set", "dropout=0.3"],
               r"dropout: has no effect with regularizer 'l2'; it belongs to 'dropout'"),
    "task": (["--task", "pos", "--regularizer", "cutmix"], ["--space", "pos_none", "--set", "regularizer=cutmix"],
             r"regularizer: cutmix is not for task 'pos' \(only image\)"),
    "task_hint": (["--task", "pos", "--regularizer", "augment"],
                  ["--space", "pos_none", "--set", "regularizer=augment"],
                  r"regularizer: augment is not for task 'pos' \(only image\); [^;]*word_dropout"),
    "model": (["--regularizer", "stochastic_depth"], ["--space", "none", "--set", "regularizer=stochastic_depth"],
              r"regularizer: stochastic_depth is not supported by model 'alexnet'; models that support it: "
              r"efficientnet_b0"),
    "conflict": (["--regularizer", "mixup+cutmix"], ["--space", "none", "--set", "regularizer=cutmix+mixup"],
                 r"regularizer: cutmix and mixup cannot be combined"),
    "twice": (["--regularizer", "l2+l2"], ["--space", "none", "--set", "regularizer=l2+l2"],
              r"regularizer: 'l2' appears twice"),
}


@pytest.mark.parametrize("case", CLI_CASES)
def test_train_once_exits_2_with_one_line(case, capsys, monkeypatch):
    args, _, message = CLI_CASES[case]
    monkeypatch.setattr(study.train_once, "run_trial", lambda *a, **k: pytest.fail("training started"))
    rc = study.train_once.main(args)
    out, err = capsys.readouterr()
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1, err
    assert re.match(rf"error: {message}", err), err


@pytest.mark.parametrize("case", CLI_CASES)
def test_run_exits_2_with_one_line_before_any_cluster(case, capsys, monkeypatch, tmp_path):
    _, args, message = CLI_CASES[case]
    from study import cluster
    monkeypatch.setattr(cluster, "connect", lambda *a, **k: pytest.fail("a Ray cluster was started"))
    rc = study.run.main(args + ["--results-dir", str(tmp_path / "results")])
    out, err = capsys.readouterr()
    assert rc == 2 and not out and len(err.strip().splitlines()) == 1, err
    space = args[1]
    assert re.match(rf"error: {space}.yaml: fixed: {message}", err), err
    assert not (tmp_path / "results").exists()


# --- --list-regularizers ---------------------------------------------------------------------------
@pytest.mark.parametrize("main", [study.train_once.main, study.run.main], ids=["train_once", "run"])
def test_list_regularizers_prints_the_catalog(main, capsys):
    assert main(["--list-regularizers"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert not err and len(lines) == len(regularizers.catalog())
    for line, t in zip(lines, regularizers.catalog()):
        name, task_field, *pairs = line.split()
        assert name == t.name
        assert task_field in ("image", "pos", "image,pos") and task_field.split(",") == list(t.tasks)
        printed = dict(p.split("=", 1) for p in pairs)
        assert list(printed) == [s.name for s in t.settings]
        assert {k: float(v) for k, v in printed.items()} == pytest.approx(t.defaults(), rel=1e-5)


def test_readme_catalog_table_matches_the_registry():
    """The README's catalog table has a row per technique with its tasks, every setting with its
    default and allowed range, its summary and its reference."""
    from pathlib import Path

    import study.regularizers as R

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines()
            if line.startswith("| `")}
    for t in R.catalog():
        assert t.name in rows, t.name
        row = rows[t.name]
        assert f"| {', '.join(t.tasks)} |" in row and t.summary in row and t.reference in row, t.name
        for s in t.settings:
            assert f"`{s.name}` {s.default:g}, {s.allowed()}" in row, (t.name, s.name)


def test_records_from_before_the_catalog_are_read_in_todays_terms():
    """What the trial table, the trainable (resume, confirmation) and --resume read from old
    records: POS `augment` is word dropout; a nonzero EfficientNet `stochastic_depth` beside a
    regularizer is the stochastic_depth technique combined with it."""
    from study.trial_table import upgrade_record

    pos = make_config(upgrade_record({"task": "pos", "regularizer": "augment", "word_dropout": 0.2}))
    assert pos.regularizer == "word_dropout" and pos.strengths == {"word_dropout": 0.2}
    sd = make_config(upgrade_record({"model": "efficientnet_b0", "regularizer": "l2", "stochastic_depth": 0.3}))
    assert sd.regularizer == "l2+stochastic_depth" and sd.strengths["stochastic_depth"] == 0.3
    assert make_config(upgrade_record({"stochastic_depth": 0.0})).regularizer == "none"
    assert make_config(upgrade_record({"regularizer": "l2_dropout"})).regularizer == "l2+dropout"
    # image `augment` is still augment
    assert make_config(upgrade_record({"regularizer": "augment"})).regularizer == "augment"


def test_task_and_model_are_checked_before_the_strengths():
    with pytest.raises(ConfigError, match=r"augment is not for task 'pos'.*word_dropout"):
        make_config({"task": "pos", "regularizer": "augment", "word_dropout": 0.2})
    # no suggestion of a combination the model cannot run
    with pytest.raises(ConfigError) as e:
        make_config({"regularizer": "l2", "stochastic_depth": 0.1})
    assert "e.g." not in str(e.value)


def test_integer_settings_need_an_integer_distribution(tmp_path):
    from study.spaces import SpaceError, load_space

    p = tmp_path / "bad.yaml"
    p.write_text("description: x\nfixed: {regularizer: cutout}\n"
                 "search: {cutout_size: {dist: uniform, low: 4, high: 16}}\n")
    with pytest.raises(SpaceError, match=r"bad.yaml: search.cutout_size.dist: cutout_size takes integers"):
        load_space(str(p))


def test_data_transforms_run_in_catalog_order():
    import study.regularizers as R

    assert R.parse("cutmix+cutout+augment").name == "augment+cutout+cutmix"
    assert R.parse("mixup+cutout").name == "cutout+mixup"
