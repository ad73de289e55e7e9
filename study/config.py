"""The typed trial configuration: one dataclass, validated once, built from plain dicts.

Every entry point (``train_once``, the sweep, the confirmation phase) turns its plain dict of
settings into a :class:`TrialConfig` with :func:`make_config`, which rejects unknown keys and
out-of-range values with a :class:`ConfigError` naming the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

TASKS = ("image", "pos")
IMAGE_MODELS = ("alexnet", "efficientnet_b0")
POS_MODELS = ("rnn", "lstm", "gru")
REGULARIZERS = ("none", "l2", "dropout", "augment", "l2_dropout")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
CORPORA = ("treebank", "conll2000", "brown")
TAGSETS = ("native", "universal")
DEVICES = ("auto", "cpu", "cuda")

# Strength defaults when a regularizer is chosen without giving its strength: the study's values.
DEFAULT_STRENGTHS = {
    "l2": {"l2": 1.5e-4},
    "dropout": {"dropout": 0.25},
    "l2_dropout": {"l2": 1.5e-4, "dropout": 0.2},
}
# Which strengths each regularizer switches on. The others are forced to "off" so that, e.g.,
# a `none` trial can never silently carry a dropout rate.
ACTIVE = {
    "none": set(),
    "l2": {"l2"},
    "dropout": {"dropout"},
    "augment": {"augment"},
    "l2_dropout": {"l2", "dropout"},
}
# Defaults that differ by task (the dataclass defaults are the image task's): given only when
# the setting is not. POS: the vanilla RNN, and smaller batches/higher lr (treebank has ~3k
# training sentences; 128-sentence batches give too few steps per epoch).
TASK_DEFAULTS = {"pos": {"model": "rnn", "batch_size": 32, "lr": 3e-3}}
AUGMENT_KEYS = (
    "flip_lr_p", "flip_ud_p", "brightness", "contrast_lo", "contrast_hi",
    "saturation_lo", "saturation_hi", "word_dropout",
)


class ConfigError(ValueError):
    """A setting is unknown or out of range. The message names the key and what is allowed."""


@dataclass(frozen=True)
class TrialConfig:
    # what is trained
    task: str = "image"
    model: str = "alexnet"
    regularizer: str = "none"
    # regularizer strengths (None = the study's default for the chosen regularizer)
    l2: float | None = None
    l2_include_bias: bool = False  # False: only conv/linear/embedding/RNN weight matrices
    dropout: float | None = None
    # image augmentation (the study's values), used when regularizer == augment
    flip_lr_p: float = 0.5
    flip_ud_p: float = 0.5
    brightness: float = 0.4  # additive delta ~ U(-b, b) on [0,1] pixels, as tf.image.random_brightness
    contrast_lo: float = 0.8
    contrast_hi: float = 1.2
    saturation_lo: float = 0.7
    saturation_hi: float = 1.3
    # sequence augmentation (word dropout), used when task == pos and regularizer == augment
    word_dropout: float = 0.1
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    lr_schedule: str = "constant"
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    # image data
    data: str | None = None  # directory or zip; None = download into cache_dir
    classes: int = 25
    class_list: tuple[str, ...] | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1  # pos only: share of sentences held out as the test split
    split_seed: int = 0  # fixed across seeds so that every seed sees the same split
    train_eval_size: int = 0  # clean-train sample size; 0 = same as the validation set
    cache_dir: str | None = None  # None = $REGSTUDY_CACHE or ~/.cache/regstudy
    download_url: str = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    download_md5: str = "90528d7ca1a48142e341f4ef8d21d0de"
    image_size: int = 64  # 224 resizes on the device, as the study did for EfficientNet-B0
    pretrained: str | None = None  # path to a state_dict, or "torchvision" for the local torch hub cache
    stochastic_depth: float = 0.0  # EfficientNet's built-in stochastic depth; 0 keeps regularizers honest
    # sequence data
    corpus: str = "treebank"
    nltk_data: str | None = None
    tagset: str = "universal"
    lowercase: bool = True
    keep_traces: bool = False
    nltk_url: str | None = None  # NLTK downloader index URL; None = NLTK's default
    embed_dim: int = 100
    hidden: int = 128
    layers: int = 1
    bidirectional: bool = False
    min_freq: int = 1
    # execution
    device: str = "auto"
    amp: bool = True  # bf16 autocast, on CUDA only
    channels_last: bool = True  # on CUDA only
    eval_batch_size: int = 1024

    # --- derived views -------------------------------------------------------------------
    @property
    def l2_lambda(self) -> float:
        return float(self.l2 or 0.0) if "l2" in ACTIVE[self.regularizer] else 0.0

    @property
    def dropout_rate(self) -> float:
        return float(self.dropout or 0.0) if "dropout" in ACTIVE[self.regularizer] else 0.0

    @property
    def augment(self) -> bool:
        return "augment" in ACTIVE[self.regularizer]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if d["class_list"] is not None:
            d["class_list"] = list(d["class_list"])
        return d


FIELDS = {f.name: f for f in dataclasses.fields(TrialConfig)}
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True,
               "false": False, "0": False, "no": False, "off": False}


def _coerce(key: str, value: Any) -> Any:
    """Turn strings from the command line (``--set key=value``) or YAML into the field's type."""
    default = FIELDS[key].default
    kind = FIELDS[key].type
    if value is None:
        if "None" in str(kind):
            return None
        raise ConfigError(f"{key}: a value is required")
    if key == "class_list":
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        return tuple(str(v) for v in value)
    if isinstance(default, bool) or kind in ("bool", "bool | None"):
        if isinstance(value, bool):
            return value
        if str(value).lower() in _BOOL_WORDS:
            return _BOOL_WORDS[str(value).lower()]
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if "int" in str(kind) and "float" not in str(kind):
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if "float" in str(kind):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    return str(value)


def _check_choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: unknown value {value!r}; allowed: {', '.join(allowed)}")


def _check_range(key: str, value: float, lo: float, hi: float, *, hi_open: bool = False,
                 lo_open: bool = False) -> None:
    bad = (not math.isfinite(value) or value < lo or value > hi
           or (hi_open and value >= hi) or (lo_open and value <= lo))
    if bad:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ConfigError(f"{key}: {value!r} is out of range; allowed: {left}{lo}, {hi}{right}")


def validate(cfg: TrialConfig) -> TrialConfig:
    _check_choice("task", cfg.task, TASKS)
    models = IMAGE_MODELS if cfg.task == "image" else POS_MODELS
    if cfg.model not in models:
        raise ConfigError(f"model: unknown value {cfg.model!r} for task {cfg.task!r}; "
                          f"allowed: {', '.join(models)}")
    _check_choice("regularizer", cfg.regularizer, REGULARIZERS)
    _check_choice("optimizer", cfg.optimizer, OPTIMIZERS)
    _check_choice("lr_schedule", cfg.lr_schedule, LR_SCHEDULES)
    _check_choice("corpus", cfg.corpus, CORPORA)
    _check_choice("tagset", cfg.tagset, TAGSETS)
    _check_choice("device", cfg.device, DEVICES)
    if cfg.l2 is not None:
        _check_range("l2", cfg.l2, 0.0, math.inf)
    if cfg.dropout is not None:
        _check_range("dropout", cfg.dropout, 0.0, 1.0, hi_open=True)
    for key in ("flip_lr_p", "flip_ud_p"):
        _check_range(key, getattr(cfg, key), 0.0, 1.0)
    _check_range("word_dropout", cfg.word_dropout, 0.0, 1.0, hi_open=True)
    _check_range("brightness", cfg.brightness, 0.0, 1.0)
    for name in ("contrast", "saturation"):
        lo, hi = getattr(cfg, f"{name}_lo"), getattr(cfg, f"{name}_hi")
        _check_range(f"{name}_lo", lo, 0.0, math.inf)
        _check_range(f"{name}_hi", hi, 0.0, math.inf)
        if lo > hi:
            raise ConfigError(f"{name}_lo/{name}_hi: range reversed ({lo} > {hi}); "
                              f"allowed: 0 <= {name}_lo <= {name}_hi")
    _check_range("lr", cfg.lr, 0.0, math.inf, lo_open=True)
    _check_range("momentum", cfg.momentum, 0.0, 1.0, hi_open=True)
    for key in ("batch_size", "epochs", "classes", "eval_batch_size", "embed_dim", "hidden",
                "layers", "image_size", "min_freq"):
        if getattr(cfg, key) < 1:
            raise ConfigError(f"{key}: {getattr(cfg, key)} is out of range; allowed: >= 1")
    if cfg.train_eval_size < 0:
        raise ConfigError(f"train_eval_size: {cfg.train_eval_size} is out of range; allowed: >= 0 "
                          "(0 = size of the validation set)")
    _check_range("val_fraction", cfg.val_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
    _check_range("test_fraction", cfg.test_fraction, 0.0, 1.0, lo_open=True, hi_open=True)
    if cfg.task == "pos" and cfg.val_fraction + cfg.test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction: {cfg.val_fraction + cfg.test_fraction} "
                          "leaves no training sentences; allowed: < 1")
    _check_range("stochastic_depth", cfg.stochastic_depth, 0.0, 1.0, hi_open=True)
    return cfg


def make_config(values: dict[str, Any] | None = None, **overrides: Any) -> TrialConfig:
    """Build and validate a config from a plain dict; unknown keys are an error."""
    merged = dict(values or {})
    merged.update(overrides)
    unknown = sorted(set(merged) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; known settings: {', '.join(sorted(FIELDS))}")
    kwargs = {k: _coerce(k, v) for k, v in merged.items()}
    for key, default in TASK_DEFAULTS.get(kwargs.get("task", TrialConfig.task), {}).items():
        kwargs.setdefault(key, default)
    reg = kwargs.get("regularizer", TrialConfig.regularizer)
    if reg in DEFAULT_STRENGTHS:
        for key, default in DEFAULT_STRENGTHS[reg].items():
            if kwargs.get(key) is None:
                kwargs[key] = default
    cfg = validate(TrialConfig(**kwargs))
    # A strength that the chosen regularizer ignores is almost always a mistake in a space file
    # or on the command line: refuse it rather than record a number that had no effect.
    for key in ("l2", "dropout"):
        if key in merged and merged[key] is not None and key not in ACTIVE[cfg.regularizer]:
            if float(merged[key]) != 0.0:
                raise ConfigError(f"{key}: has no effect with regularizer {cfg.regularizer!r}; "
                                  f"regularizers that use it: "
                                  f"{', '.join(r for r, a in ACTIVE.items() if key in a)}")
    return cfg


def parse_set(items: list[str] | None) -> dict[str, str]:
    """``--set key=value`` pairs to a dict (values stay strings; make_config coerces them)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in FIELDS:
            raise ConfigError(f"--set {key}: unknown setting; known settings: {', '.join(sorted(FIELDS))}")
        out[key] = value.strip()
    return out
