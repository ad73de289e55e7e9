"""Search-space files: every shipped space loads, and the Optuna define-by-run function samples
only valid configurations, conditionals only under their regularizer."""
from __future__ import annotations

import functools
import math

import optuna
import pytest

from study.config import ACTIVE, REGULARIZERS, make_config
from study.spaces import SpaceError, available, define_by_run, describe_all, load_space, validate_space

IMAGE_SPACES = ("none", "l2", "dropout", "augment", "l2_dropout", "all")
AUGMENT_PARAMS = {"flip_lr_p", "flip_ud_p", "brightness", "contrast_lo", "contrast_hi", "saturation_lo",
                  "saturation_hi"}


def sample(space, n: int, seed: int = 0) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=5))
    fn = functools.partial(define_by_run, space.search)
    study.optimize(lambda t: (fn(t), 0.0)[1], n_trials=n)
    return study.trials


def test_shipped_spaces_exist_and_load():
    names = set(available())
    assert set(IMAGE_SPACES) <= names
    for name in names:
        space = load_space(name)
        assert space.description and "lr" in space.searched_names()
        cfg = make_config(space.fixed)
        assert cfg.epochs >= 1 and space.sweep["num_samples"] >= 1
    descs = dict(describe_all())
    assert all(descs[n] for n in IMAGE_SPACES)


@pytest.mark.parametrize("name,reg,params", [
    ("none", "none", {"lr"}),
    ("l2", "l2", {"lr", "l2"}),
    ("dropout", "dropout", {"lr", "dropout"}),
    ("augment", "augment", {"lr"} | AUGMENT_PARAMS),
    ("l2_dropout", "l2_dropout", {"lr", "l2", "dropout"}),
])
def test_single_type_spaces_sample_valid_configs(name, reg, params):
    space = load_space(name)
    assert set(space.searched_names()) == params
    for t in sample(space, 12):
        assert set(t.params) == params
        cfg = make_config({**space.fixed, **t.params})
        assert cfg.regularizer == reg
        for key, spec in space.search.items():
            assert spec["low"] <= t.params[key] <= spec["high"]
        if "l2" in params:
            assert cfg.l2_lambda == pytest.approx(t.params["l2"]) and t.params["l2"] > 0
        if "dropout" in params:
            assert cfg.dropout_rate == pytest.approx(t.params["dropout"]) and 0 <= cfg.dropout_rate < 1
        if reg == "augment":
            assert cfg.contrast_lo <= cfg.contrast_hi and cfg.saturation_lo <= cfg.saturation_hi


def test_all_space_is_conditional_on_the_regularizer():
    space = load_space("all")
    choices = space.search["regularizer"]["choices"]
    assert set(choices) == set(REGULARIZERS)
    seen = set()
    for t in sample(space, 40):
        reg = t.params["regularizer"]
        seen.add(reg)
        # exactly the lr plus the chosen type's strengths: nothing sampled for the other types
        assert set(t.params) == {"lr", "regularizer"} | set(choices[reg])
        cfg = make_config({**space.fixed, **t.params})
        assert cfg.regularizer == reg
        assert (cfg.l2_lambda > 0) == ("l2" in ACTIVE[reg])
        assert (cfg.dropout_rate > 0) == ("dropout" in ACTIVE[reg]) or t.params.get("dropout") == 0
    assert len(seen) >= 4  # TPE explores the categorical
    assert {"l2", "dropout"} <= set(space.searched_names()) and AUGMENT_PARAMS <= set(space.searched_names())


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


def test_overrides_are_validated_against_the_search(tmp_path):
    space = load_space("l2")
    space.fixed = {**space.fixed, "regularizer": "none"}  # e.g. --set regularizer=none
    with pytest.raises(SpaceError, match=r"l2.yaml: search.l2: l2: has no effect with regularizer 'none'"):
        validate_space(space)
    space = load_space("augment")
    space.fixed = {**space.fixed, "epochs": 3, "classes": 4}
    validate_space(space)
