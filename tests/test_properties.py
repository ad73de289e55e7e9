"""Property-based tests (Hypothesis) of bad input: every ``--set`` key (``known_settings()``: the
trial config and every strength of the catalog) and every numeric option of study.train_once and
the analysis commands, given values in range, out of range, NaN, infinite, of the wrong type and
arbitrary text. Each either builds a valid config / passes the option checks, or is refused with
exit 2 and one line that names the key or option. Nothing is trained or analysed: the work
functions are replaced by stubs that only record that they were reached."""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis import report as report_cli
from analysis import summarize as summarize_cli
from study import datasets, regularizers, tasks, train_once
from study.config import _BOOL_WORDS, CHOICES, RANGES, ConfigError, TrialConfig, known_settings, make_config

EXAMPLES = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
FEW = settings(EXAMPLES, max_examples=8)

# What a command line can carry: any text without NUL (argv is C strings) or lone surrogates.
ARGV_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=24)
ODD = ["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "", " ", "abc", "1,5", "0x10", "true", "[1]", "None"]
BOOLS = {k: k for k in _BOOL_WORDS}
CATALOG = regularizers.settings()
PATHS = ("data", "cache_dir", "nltk_data", "pretrained")  # checked on this machine by the command
URLS = ("download_url", "nltk_url")
RANGE_CROSSED = {"contrast_lo", "contrast_hi", "saturation_lo", "saturation_hi"}  # lo <= hi as well


def context(key: str) -> dict[str, str]:
    """The other settings that make ``key`` meaningful: a strength needs its technique (and a
    task and model that take it); pretrained needs a model that loads weights."""
    if key in CATALOG:
        owner, _ = regularizers.setting(key)
        task = "image" if "image" in owner.tasks else owner.tasks[0]
        model = next(m for m, ms in tasks.get(task).models.items() if set(owner.model_hooks) <= ms.accepts)
        return {"task": task, "model": model, "regularizer": owner.name}
    if key == "pretrained":
        return {"model": "efficientnet_b0"}
    return {}


def effective_range(key: str, ctx: dict[str, str]):
    """(lo, hi, lo_open, hi_open, integer) that the key's value must satisfy."""
    s = CATALOG.get(key) or RANGES[key]
    lo, hi = s.lo, s.hi
    if key == "image_size":  # the model's own limits (ModelSpec.input_sizes)
        mlo, mhi = tasks.get(ctx.get("task", "image")).models[ctx.get("model", "alexnet")].input_sizes
        lo, hi = max(lo, mlo), min(hi, mhi)
    return lo, hi, s.lo_open, s.hi_open, s.integer


def number_texts(key: str, ctx: dict[str, str]):
    lo, hi, _, _, _ = effective_range(key, ctx)
    edges = [v for v in (lo, hi, lo - 1, hi + 1, lo + 0.5, (lo + hi) / 2, hi - 1e-9, -lo - 1) if math.isfinite(v)]
    return st.one_of(
        st.integers(-2**40, 2**40).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(edges).map(lambda v: repr(int(v)) if float(v).is_integer() else repr(v)),
        st.sampled_from(ODD), ARGV_TEXT)


def number_ok(key: str, ctx: dict[str, str], text: str) -> bool:
    lo, hi, lo_open, hi_open, integer = effective_range(key, ctx)
    try:
        v = float(text.strip())
    except ValueError:
        return False
    return (math.isfinite(v) and (not integer or v.is_integer())
            and (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi))


def values_and_oracle(key: str, ctx: dict[str, str]):
    """(strategy of command-line texts, oracle: True valid, False refused, None either)."""
    if key == "classes":  # a number of classes, or all of them
        return st.one_of(number_texts(key, ctx), st.sampled_from(["all", "ALL", "none"])), (
            lambda t: t.strip().lower() in ("all", "none") or number_ok(key, ctx, t))
    if key in CATALOG or key in RANGES:
        return number_texts(key, ctx), (
            lambda t: None if key in RANGE_CROSSED and number_ok(key, ctx, t) else number_ok(key, ctx, t))
    if key == "dataset":
        allowed = tuple(datasets.names())
        return st.one_of(st.sampled_from(allowed), ARGV_TEXT), lambda t: t.strip() in allowed
    if key in CHOICES or key in ("task", "model"):
        allowed = CHOICES.get(key) or (tuple(tasks.names()) if key == "task" else tuple(tasks.get("image").models))
        return st.one_of(st.sampled_from(allowed), ARGV_TEXT), lambda t: t.strip() in allowed
    if key == "regularizer":
        ok = [n for n in regularizers.names("image") if n not in ("stochastic_depth",)]
        return st.one_of(st.sampled_from(ok), ARGV_TEXT), lambda t: True if t.strip() in ok else None
    if isinstance(TrialConfig.__dataclass_fields__[key].default, bool):
        return st.one_of(st.sampled_from(sorted(BOOLS)), ARGV_TEXT), lambda t: t.strip().lower() in BOOLS
    if key == "class_list":
        wnid = st.sampled_from(["n01", "n02", "n03", "n04"])
        return st.one_of(st.lists(wnid, max_size=4).map(",".join), ARGV_TEXT), _class_list_ok
    if key == "download_md5":
        return (st.one_of(st.text("0123456789abcdefABCDEF", min_size=30, max_size=34), ARGV_TEXT),
                lambda t: re.fullmatch(r"[0-9a-fA-F]{32}", t.strip()) is not None)
    if key in URLS:
        good = st.sampled_from(["http://127.0.0.1:1/x.zip", "https://example.org/a", "file:///tmp/x"])
        return st.one_of(good, ARGV_TEXT), lambda t: True if t.strip().startswith(("http://1", "https://e", "file:")) else None
    assert key in PATHS, f"{key}: no strategy; add one (every setting must be covered)"
    return ARGV_TEXT, lambda t: True


def _class_list_ok(text: str) -> bool:
    names = [v for v in text.strip().split(",") if v]
    return len(names) >= 2 and len(set(names)) == len(names)


def names_key(message: str, key: str) -> bool:
    return re.search(rf"(^|[\s/'(-]){re.escape(key)}\b", message) is not None


def test_every_setting_has_a_strategy():
    assert set(known_settings()) == set(RANGES) | set(CATALOG) | set(CHOICES) | {
        "task", "dataset", "model", "regularizer", "class_list", "download_md5", *URLS, *PATHS} | {
        k for k, f in TrialConfig.__dataclass_fields__.items() if isinstance(f.default, bool)}


# --- make_config: the exact rule per key -----------------------------------------------------------
@pytest.mark.parametrize("key", known_settings())
def test_set_value_builds_a_config_or_is_refused_naming_the_key(key):
    ctx = context(key)
    texts, oracle = values_and_oracle(key, ctx)

    @EXAMPLES
    @given(texts)
    def check(text):
        from study.config import parse_set
        try:
            cfg = make_config({**ctx, **parse_set([f"{key}={text}"])})
        except ConfigError as e:
            assert names_key(str(e), key), (text, str(e))
            assert oracle(text) is not True, f"{key}={text!r} is valid but was refused: {e}"
            return
        assert oracle(text) is not False, f"{key}={text!r} should be refused; built {cfg}"
        if key == "classes" and text.strip().lower() in ("all", "none"):
            assert cfg.classes is None
        elif key in RANGES:
            assert float(getattr(cfg, key)) == float(text.strip())
        if key in CATALOG:
            assert cfg.strengths[key] == float(text.strip())

    check()


# --- through the command lines --------------------------------------------------------------------
@pytest.fixture(scope="module")
def stubbed(tmp_path_factory):
    """train_once's data loading and training, and the analysis, replaced by recorders."""
    reached: list = []
    cache = tmp_path_factory.mktemp("cache")
    results = tmp_path_factory.mktemp("results")
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))  # (relative paths in generated settings land here)

    def work(*a, **k):
        reached.append(a)
        raise SystemExit(0)  # (not an Exception: study.cli passes it on, so the test sees 0)

    with mock.patch.object(train_once, "load_data", lambda cfg: None), \
            mock.patch.object(train_once, "run_trial", work), \
            mock.patch.object(summarize_cli, "summarize", work), mock.patch.object(report_cli, "report", work), \
            mock.patch.dict(os.environ, {"REGSTUDY_CACHE": str(cache), "REGSTUDY_OFFLINE": "1"}):
        try:
            yield results, reached
        finally:
            os.chdir(here)


def run_cli(main, argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:  # argparse's own errors (2) and the work stub (0)
            rc = e.code
    return rc, err.getvalue().strip()


@pytest.mark.parametrize("key", known_settings())
def test_train_once_set_exits_0_or_2_naming_the_key(key, stubbed, tmp_path_factory):
    ctx = context(key)
    texts, oracle = values_and_oracle(key, ctx)
    flags = [a for k, v in ctx.items() for a in ("--set", f"{k}={v}")]

    @FEW
    @given(texts)
    def check(text):
        rc, err = run_cli(train_once.main, [*flags, "--set", f"{key}={text}"])
        assert rc in (0, 2), (text, rc, err)
        if rc == 2:
            assert len(err.splitlines()) == 1 and names_key(err, key), (text, err)
            # a valid value is refused only where this machine cannot use it (a path, a GPU)
            assert oracle(text) is not True or key in PATHS + ("device",), (text, err)
        else:
            assert oracle(text) is not False, (text, "accepted")

    check()


TRAIN_ONCE_NUMBERS = {"--epochs": "epochs", "--seed": "seed", "--classes": "classes",
                      "--batch-size": "batch_size", "--lr": "lr"}


@pytest.mark.parametrize("option", sorted(TRAIN_ONCE_NUMBERS))
def test_train_once_numeric_options(option, stubbed):
    key = TRAIN_ONCE_NUMBERS[option]
    integer = RANGES[key].integer

    @EXAMPLES
    @given(number_texts(key, {}))
    def check(text):
        rc, err = run_cli(train_once.main, [f"{option}={text}"])
        parsable = _parses(int if integer else float, text)
        expected_ok = parsable and number_ok(key, {}, text)
        assert rc == (0 if expected_ok else 2), (text, rc, err)
        if rc == 2:
            assert option in err or names_key(err.splitlines()[-1], key), (text, err)

    check()


def _parses(kind, text: str) -> bool:
    try:
        kind(text)
        return True
    except ValueError:
        return False


@pytest.mark.parametrize("command", [summarize_cli.main, report_cli.main], ids=["summarize", "report"])
@pytest.mark.parametrize("option", sorted(summarize_cli.OPTIONS))
def test_analysis_numeric_options(option, command, stubbed):
    results, _ = stubbed
    s = summarize_cli.OPTIONS[option]

    @EXAMPLES
    @given(st.one_of(st.integers(-2**40, 2**40).map(str),
                     st.sampled_from([s.lo, s.lo - 1, s.hi, s.hi + 1, 0, -1] if math.isfinite(s.hi) else
                                     [s.lo, s.lo - 1, 0, -1]).map(lambda v: str(int(v))),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(ODD), ARGV_TEXT))
    def check(text):
        rc, err = run_cli(command, [str(results), f"{option}={text}"])
        ok = _parses(int, text) and s.lo <= int(text) <= s.hi
        assert rc == (0 if ok else 2), (text, rc, err)
        if rc == 2:
            assert option in err.splitlines()[-1], (text, err)

    check()
