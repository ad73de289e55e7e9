"""Search-space files: every shipped space loads, and the Optuna define-by-run function samples
only valid configurations, conditionals only under their regularizer. Technique names come from
the catalog (study.regularizers), never from a list here."""
from __future__ import annotations

import functools
import math

import optuna
import pytest

from study import regularizers, tasks
from study.config import ConfigError, make_config
from study.regularizers import ALIASES
from study.spaces import SpaceError, available, define_by_run, describe_all, load_space, validate_space

ALL_SPACES = {"all": "alexnet", "all_efficientnet": "efficientnet_b0"}  # image: space -> its fixed model


def space_name(task: str, regularizer: str) -> str:
    """The naming rule of the shipped spaces: image spaces after the technique, pos ones prefixed."""
    return regularizer if task == "image" else f"{task}_{regularizer}"


SINGLE = [(space_name(task, t.name), task, t.name) for t in regularizers.catalog() for task in t.tasks]
ENSEMBLES = [(space_name(task, a.name), task, a.name) for a in ALIASES.values() for task in tasks.names()
             if all(task in x.tasks for x in regularizers.parse(a.name).techniques)]


def sample(space, n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))
    fn = functools.partial(define_by_run, space.search)
    study.optimize(lambda t: (fn(t), 0.0)[1], n_trials=n)
    return study.trials


def unsupported(task: str, model: str) -> set[str]:
    """Techniques of the task that the model cannot apply (it lacks one of their hooks)."""
    out = set()
    for name in regularizers.names(task):
        try:
            make_config({"task": task, "model": model, "regularizer": name})
        except ConfigError as e:
            assert f"not supported by model {model!r}" in str(e), e
            out.add(name)
    return out


def check_sampled(space, cfg, params: dict) -> None:
    """The config a trial gets holds exactly what was sampled, inside the distribution's bounds."""
    assert cfg.lr == pytest.approx(params["lr"])
    combo = cfg.combination
    assert set(cfg.strengths) == set(combo.setting_names())
    for key, value in params.items():
        if key in ("lr", "regularizer"):
            continue
        assert key in combo.setting_names(), (key, combo.name)
        assert cfg.strengths[key] == pytest.approx(value)
        _, st = regularizers.setting(key)
        st.check(cfg.strengths[key])
    for key, spec in space.search.items():
        if spec["dist"] in ("uniform", "loguniform", "int"):
            assert spec["low"] <= params[key] <= spec["high"]
            if spec["dist"] == "int":
                assert isinstance(params[key], int)
    # paired ranges (contrast_lo/_hi, ...) are never reversed
    for key, value in cfg.strengths.items():
        if key.endswith("_lo") and key[:-3] + "_hi" in cfg.strengths:
            assert value <= cfg.strengths[key[:-3] + "_hi"]


def test_shipped_spaces_exist_and_load():
    names = set(available())
    assert {n for n, _, _ in SINGLE + ENSEMBLES} | set(ALL_SPACES) | {"pos_all"} <= names
    assert {"compare", "compare_all", "pos_compare", "pos_compare_all", "seed_table1"} <= names
    for name in names:
        space = load_space(name)
        cfg = make_config(space.fixed)
        assert space.description and cfg.epochs >= 1
        if space.kind == "grid":
            assert space.sweep["seeds"] >= 1 and not space.search
        else:
            assert "lr" in space.searched_names()
            assert space.sweep["trials_per_technique" if space.kind == "compare" else "num_samples"] >= 1
    descs = dict(describe_all())
    assert all(descs[n] for n in names)


@pytest.mark.parametrize("name,task,reg", SINGLE + ENSEMBLES, ids=[n for n, _, _ in SINGLE + ENSEMBLES])
def test_every_technique_has_a_space_that_samples_valid_configs(name, task, reg):
    space = load_space(name)
    combo = regularizers.parse(reg)
    params = set(space.searched_names())
    assert "lr" in params and params - {"lr"} <= set(combo.setting_names())
    if combo.setting_names():  # a technique with strengths has them searched
        assert params - {"lr"}
    for t in sample(space, 12):
        assert set(t.params) == params
        cfg = make_config({**space.fixed, **t.params})
        assert cfg.task == task and cfg.regularizer == combo.name
        assert [x.name for x in cfg.combination.techniques] == [x.name for x in combo.techniques]
        check_sampled(space, cfg, t.params)


def test_the_ensemble_space_searches_both_strengths():
    space = load_space("l2_dropout")
    combo = regularizers.parse("l2_dropout")
    assert len(combo.techniques) == 2 and set(space.searched_names()) == {"lr", *combo.setting_names()}
    for t in sample(space, 8):
        cfg = make_config({**space.fixed, **t.params})
        assert all(cfg.combination.uses(x.name) for x in combo.techniques)
        assert cfg.strengths == {k: pytest.approx(t.params[k]) for k in combo.setting_names()}


@pytest.mark.parametrize("name,task,model", [("all", "image", "alexnet"),
                                             ("all_efficientnet", "image", "efficientnet_b0"),
                                             ("cifar10_all", "image", "resnet18"),
                                             ("cifar100_all", "image", "resnet18"),
                                             ("pos_all", "pos", "rnn")])
def test_all_spaces_are_conditional_on_the_regularizer(name, task, model):
    space = load_space(name)
    assert space.fixed["model"] == model and make_config(space.fixed).task == task
    choices = space.search["regularizer"]["choices"]
    # every technique of the task the model supports, plus the ensemble alias
    techniques = set(choices) - set(ALIASES)
    assert techniques | unsupported(task, model) == set(regularizers.names(task))
    assert not techniques & unsupported(task, model)
    assert set(ALIASES) <= set(choices)
    seen = set()
    for t in sample(space, 40):
        reg = t.params["regularizer"]
        seen.add(reg)
        # exactly the lr plus the chosen type's strengths: nothing sampled for the other types
        assert set(t.params) == {"lr", "regularizer"} | set(choices[reg])
        cfg = make_config({**space.fixed, **t.params})
        assert cfg.regularizer == regularizers.parse(reg).name
        for other in regularizers.names(task):
            assert cfg.combination.uses(other) == regularizers.parse(reg).uses(other)
        check_sampled(space, cfg, t.params)
    assert len(seen) >= 4  # TPE explores the categorical
    searched = set(space.searched_names())
    for reg, sub in choices.items():
        assert set(sub) <= searched and set(sub) <= set(regularizers.parse(reg).setting_names())


@pytest.mark.parametrize("name,dataset,holes_at_most", [("cifar10_all", "cifar10", 20), ("cifar100_all", "cifar100", 12)])
def test_cifar_spaces_study_their_dataset_at_its_own_size(name, dataset, holes_at_most):
    """32 px images: the spaces keep them at 32 (the small-image ResNet-18) and Cutout's square
    stays within the image (the Cutout paper: 16 px on CIFAR-10, 8 on CIFAR-100)."""
    space = load_space(name)
    cfg = make_config(space.fixed)
    assert (cfg.dataset, cfg.image_size, cfg.classes) == (dataset, 32, None)
    assert space.search["regularizer"]["choices"]["cutout"]["cutout_size"]["high"] == holes_at_most


def test_all_efficientnet_covers_the_image_catalog():
    choices = load_space("all_efficientnet").search["regularizer"]["choices"]
    assert set(choices) - set(ALIASES) == set(regularizers.names("image"))
    assert not unsupported("image", "efficientnet_b0")


@pytest.mark.parametrize("all_name,task", [("all", "image"), ("all_efficientnet", "image"), ("pos_all", "pos")])
def test_all_and_single_spaces_agree_on_ranges(all_name, task):
    """A technique's strengths are searched over the same ranges alone and inside the `all` space."""
    choices = load_space(all_name).search["regularizer"]["choices"]
    for reg, sub in choices.items():
        single = load_space(space_name(task, reg)).search
        assert {k: single[k] for k in sub} == sub, (all_name, reg)


def test_seeded_sampler_is_reproducible():
    space = load_space("l2_dropout")
    a = [t.params for t in sample(space, 8, seed=3)]
    b = [t.params for t in sample(space, 8, seed=3)]
    assert a == b and a != [t.params for t in sample(space, 8, seed=4)]


def test_loguniform_is_sampled_on_a_log_scale():
    space = load_space("l2")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (define_by_run(space.search, t), 0.0)[1], n_trials=200)
    l2s = [t.params["l2"] for t in study.trials]
    lo, hi = space.search["l2"]["low"], space.search["l2"]["high"]
    assert all(lo <= v <= hi for v in l2s)
    # half of the draws below the geometric middle (a uniform draw would put ~1% there)
    assert 0.35 < sum(v < math.sqrt(lo * hi) for v in l2s) / len(l2s) < 0.65


def test_unknown_space_lists_the_available_ones():
    with pytest.raises(SpaceError, match=r"unknown space 'nope'; available: .*l2_dropout"):
        load_space("nope")


def test_space_from_a_path_and_int_and_categorical(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("description: mine\nfixed: {regularizer: dropout, epochs: 2}\nsearch:\n"
                 "  dropout: {dist: uniform, low: 0.1, high: 0.5}\n"
                 "  batch_size: {dist: categorical, choices: [16, 32]}\n"
                 "  hidden: {dist: int, low: 8, high: 64, log: true}\n")
    space = load_space(str(p))
    assert space.name == "mine" and space.searched_names() == ["dropout", "batch_size", "hidden"]
    for t in sample(space, 6):
        assert t.params["batch_size"] in (16, 32) and 8 <= t.params["hidden"] <= 64
        assert isinstance(t.params["hidden"], int)


def test_a_range_outside_the_setting_is_refused(tmp_path):
    """The loader probes both ends of every range against the Setting's allowed range."""
    for key, st in regularizers.settings().items():
        if st.hi == math.inf or st.integer:
            continue
        owner, _ = regularizers.setting(key)
        task = owner.tasks[0]
        model = next(m for m in tasks.get(task).models if owner.name not in unsupported(task, m))
        p = tmp_path / f"bad_{key}.yaml"
        p.write_text(f"description: x\nfixed: {{task: {task}, model: {model}, regularizer: {owner.name}}}\n"
                     f"search:\n  {key}: {{dist: uniform, low: {max(st.lo, 0.0)}, high: {st.hi + 0.5}}}\n")
        with pytest.raises(SpaceError, match=rf"bad_{key}.yaml: search.{key}: {key}: .* is out of range"):
            load_space(str(p))


def test_overrides_are_validated_against_the_search(tmp_path):
    space = load_space("l2")
    space.fixed = {**space.fixed, "regularizer": "none"}  # e.g. --set regularizer=none
    with pytest.raises(SpaceError, match=r"l2.yaml: search.l2: l2: has no effect with regularizer 'none'"):
        validate_space(space)
    space = load_space("augment")
    space.fixed = {**space.fixed, "epochs": 3, "classes": 4}
    validate_space(space)


# --- comparison and grid spaces -------------------------------------------------------------------
@pytest.mark.parametrize("name,all_name", [("compare_all", "all"), ("pos_compare_all", "pos_all")])
def test_compare_all_spaces_take_the_whole_catalog_with_the_all_spaces_ranges(name, all_name):
    """The comparison of every technique: the same techniques and ranges as the `all` space's
    categorical choice, the baseline first, one TPE space per technique."""
    space, every = load_space(name), load_space(all_name)
    choices = every.search["regularizer"]["choices"]
    assert space.kind == "compare" and list(space.compare)[0] == "none"
    assert space.compare == {regularizers.parse(k).name: v for k, v in choices.items()}
    assert space.search == {"lr": every.search["lr"]} and space.fixed == every.fixed | {"epochs": space.fixed["epochs"]}
    for tech in space.compare:
        for t in sample(type(space)(**{**space.__dict__, "search": space.technique_search(tech), "compare": {}}), 6):
            cfg = make_config({**space.fixed, **t.params, "regularizer": tech})
            assert set(t.params) == {"lr", *space.compare[tech]} and cfg.regularizer == tech


def test_compare_spaces_hold_the_original_studys_techniques():
    assert list(load_space("compare").compare) == ["none", "l2", "dropout", "augment", "l2+dropout"]
    assert list(load_space("pos_compare").compare) == ["none", "l2", "dropout", "word_dropout", "l2+dropout"]


def test_seed_table1_has_the_reports_settings():
    space = load_space("seed_table1")
    cfg = make_config(space.fixed)
    assert (cfg.model, cfg.dataset, cfg.classes, cfg.epochs) == ("alexnet", "tinyimagenet", 25, 25)
    runs = {make_config({**space.fixed, **c}).regularizer: make_config({**space.fixed, **c}).strengths
            for c in space.grid}
    assert runs == {"none": {}, "l2": {"l2": 1.5e-4}, "dropout": {"dropout": 0.25},
                    "augment": {"flip_lr_p": 0.5, "flip_ud_p": 0.5, "brightness": 0.4, "contrast_lo": 0.8,
                                "contrast_hi": 1.2, "saturation_lo": 0.7, "saturation_hi": 1.3},
                    "l2+dropout": {"l2": 1.5e-4, "dropout": 0.2}}
    assert space.sweep == {"seeds": 5} and "learning rate" in space.description


@pytest.mark.parametrize("body,message", [
    ("compare: {l2: {l2: {dist: loguniform, low: 1.0e-6, high: 1.0e-2}}, nope: {}}",
     "compare.nope: regularizer: unknown technique 'nope'"),
    ("compare: {l2: {dropout: {dist: uniform, low: 0.0, high: 0.5}}}",
     "compare.l2.dropout: not a setting of l2; its settings: l2"),
    ("compare: {none: {lr: {dist: uniform, low: 0.001, high: 0.01}}}",
     "compare.none: the baseline has no strengths to search"),
    ("compare: {l2: {}, l2_dropout: {}, dropout+l2: {}}", "compare.dropout+l2: the same technique as another"),
    ("fixed: {regularizer: l2}\ncompare: {l2: {}}", "fixed.regularizer: a comparison space names its techniques"),
    ("compare: {l2: {l2: {dist: loguniform, low: 1.0e-6, high: 1.0e-2}}}\n"
     "search: {l2: {dist: loguniform, low: 1.0e-6, high: 1.0e-2}}", "compare.l2.l2: is searched for every technique"),
    ("compare: {l2: {}}\nsweep: {num_samples: 3}", "sweep.num_samples: not for a compare space; allowed: "
     "trials_per_technique"),
    ("grid: [{regularizer: l2, l2: 1.0e-4}, {regularizer: l2, l2: 1.0e-3}]", "grid: two configurations are the "
     "same technique (l2)"),
    ("grid: [{regularizer: l2, nope: 1}]", "grid[0].nope: unknown setting"),
    ("grid: [{regularizer: none}, {regularizer: l2, epochs: 3}]", "grid[1].epochs: is the same for every "
     "configuration"),
    ("grid: [{regularizer: none, seed: 3}]", "grid[0].seed: is the same for every configuration"),
    ("grid: [{regularizer: dropout, dropout: 1.5}]", "grid[0]: dropout: 1.5 is out of range"),
    ("grid: []", "grid: expected a non-empty list"),
    ("grid: [{regularizer: none}]\nsearch: {lr: {dist: uniform, low: 0.001, high: 0.01}}",
     "search: a grid space runs fixed configurations"),
    ("grid: [{regularizer: none}]\ncompare: {l2: {}}", "grid: a space either compares"),
    ("grid: [{regularizer: none}]\nsweep: {trials_per_technique: 2}", "sweep.trials_per_technique: not for a grid"),
])
def test_bad_comparison_and_grid_spaces_name_the_key(tmp_path, body, message):
    p = tmp_path / "bad.yaml"
    p.write_text(f"description: x\n{body}\n")
    with pytest.raises(SpaceError, match="bad.yaml: " + re_escape(message)):
        load_space(str(p))


def test_a_comparison_always_has_the_baseline(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("description: x\ncompare: {dropout: {dropout: {dist: uniform, low: 0.0, high: 0.5}}, l2: {}}\n")
    space = load_space(str(p))
    assert list(space.compare) == ["none", "dropout", "l2"] and space.compare["none"] == {}
    assert space.searched_names() == ["regularizer", "dropout"]


def re_escape(text: str) -> str:
    import re
    return re.escape(text)
