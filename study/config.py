"""The typed trial configuration: one dataclass, validated once, built from plain dicts.

Every entry point (``train_once``, the sweep, the confirmation phase) turns its plain dict of
settings into a :class:`TrialConfig` with :func:`make_config`, which rejects unknown keys and
out-of-range values with a :class:`ConfigError` naming the key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping

from . import datasets, regularizers, tasks
from .regularizers import CatalogError

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("constant", "cosine")
CORPORA = ("treebank", "conll2000", "brown", "conllu")
# The tag sets of each corpus: NLTK's corpora have their own tags (native) and NLTK's universal
# mapping; a CoNLL-U file has the UPOS column (universal, the POS default, or upos) and XPOS.
CORPUS_TAGSETS = {"treebank": ("native", "universal"), "conll2000": ("native", "universal"),
                  "brown": ("native", "universal"), "conllu": ("universal", "upos", "xpos")}
TAGSETS = ("native", "universal", "upos", "xpos")
DEVICES = ("auto", "cpu", "cuda")
USER_DATA = ("imagefolder", "conllu")  # datasets that exist only as the user's files (no download)


class ConfigError(CatalogError):
    """A setting is unknown or out of range. The message names the key and what is allowed."""


@dataclass(frozen=True)
class TrialConfig:
    # what is trained
    task: str = "image"
    model: str = "alexnet"
    regularizer: str = "none"  # canonical name: a technique or techniques joined by "+"
    # the strengths of the regularizer's techniques (every setting, defaults filled in); flat keys
    # in plain dicts (``l2``, ``dropout``, ``mixup_alpha``, ...): see study.regularizers
    strengths: Mapping[str, float] = dataclasses.field(default_factory=dict)
    l2_include_bias: bool = False  # False: L1/L2/weight decay cover only weight matrices and kernels
    # optimisation
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    lr_schedule: str = "constant"
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    # image data
    dataset: str = "tinyimagenet"  # a name in the dataset table (study.datasets)
    data: str | None = None  # the dataset's directory, archive or file; None = download into cache_dir
    classes: int | None = 25  # the first N classes; None = all (the default of every dataset but Tiny ImageNet)
    class_list: tuple[str, ...] | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1  # share held out as the test split where the data gives none (pos, ImageFolder)
    split_seed: int = 0  # fixed across seeds so that every seed sees the same split
    train_eval_size: int = 0  # clean-train sample size; 0 = same as the validation set
    cache_dir: str | None = None  # None = $REGSTUDY_CACHE or ~/.cache/regstudy
    download_url: str | None = None  # None = the dataset's official URL
    download_md5: str | None = None  # None = the dataset's official archive's MD5
    image_size: int = 64  # the model's input side; 224 resizes on the device, as the study did for EfficientNet-B0
    pretrained: str | None = None  # path to a state_dict, or "torchvision" for the local torch hub cache
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
    compile: bool = False  # torch.compile the model (pays on GPUs for long runs; see benchmarks)

    @property
    def combination(self) -> regularizers.Combination:
        return regularizers.parse(self.regularizer)

    @property
    def dataset_name(self) -> str:
        """What the trial table's ``dataset`` column says: the image dataset, or the corpus; for
        data that only exists as the user's files (``imagefolder``, ``conllu``), with the name of
        the file or directory (``imagefolder:flowers``), so two of them are never grouped together."""
        name = getattr(self, tasks.get(self.task).dataset_key)
        if self.data and name in USER_DATA:
            stem = os.path.basename(os.path.normpath(self.data))
            return f"{name}:{stem.removesuffix('.conllu').removesuffix('.zip')}"
        return name

    def to_dict(self) -> dict[str, Any]:
        """Flat plain dict (strengths as top-level keys): ``make_config(cfg.to_dict()) == cfg``."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "strengths"}
        if d["class_list"] is not None:
            d["class_list"] = list(d["class_list"])
        d.update(self.strengths)
        return d


FIELDS = {f.name: f for f in dataclasses.fields(TrialConfig) if f.name != "strengths"}


def known_settings() -> list[str]:
    """Every key a plain config dict, ``--set`` or a space may hold."""
    return sorted(set(FIELDS) | set(regularizers.settings()))


SEED_MAX = 2**32 - 1  # (seeds go to torch, numpy and Python's random: this range suits all three)


def _range(name: str, lo: float, hi: float, **kw: Any) -> regularizers.Setting:
    return regularizers.Setting(name, FIELDS[name].default, lo, hi, **kw)


# The range of every numeric setting that is not a regularizer strength (those are declared in
# the catalog, with the same type): read by validate() and by the property tests. image_size
# also has each model's own limits (ModelSpec.input_sizes).
RANGES: dict[str, regularizers.Setting] = {s.name: s for s in (
    _range("lr", 0.0, math.inf, lo_open=True),
    _range("momentum", 0.0, 1.0, hi_open=True),
    _range("batch_size", 1, math.inf, integer=True),
    _range("epochs", 1, math.inf, integer=True),
    _range("seed", 0, SEED_MAX, integer=True),
    _range("split_seed", 0, SEED_MAX, integer=True),
    _range("classes", 2, math.inf, integer=True),  # a classifier needs at least two classes
    _range("val_fraction", 0.0, 1.0, lo_open=True, hi_open=True),
    _range("test_fraction", 0.0, 1.0, lo_open=True, hi_open=True),
    _range("train_eval_size", 0, math.inf, integer=True),  # 0 = the size of the validation split
    _range("image_size", 1, math.inf, integer=True),
    _range("embed_dim", 1, math.inf, integer=True),
    _range("hidden", 1, math.inf, integer=True),
    _range("layers", 1, math.inf, integer=True),
    _range("min_freq", 1, math.inf, integer=True),
    _range("eval_batch_size", 1, math.inf, integer=True),
)}
# Settings with a fixed set of values (model and regularizer depend on the task: see validate()).
CHOICES: dict[str, tuple[str, ...]] = {"optimizer": OPTIMIZERS, "lr_schedule": LR_SCHEDULES,
                                       "corpus": CORPORA, "tagset": TAGSETS, "device": DEVICES}
URL_SCHEMES = ("http", "https", "ftp", "file")  # what urllib (downloads) and NLTK's downloader open
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
    if key == "classes" and str(value).strip().lower() in ("all", "none"):
        return None
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


def _unknown_model(task: str, model: str) -> None:
    models = tasks.get(task).models
    extra = getattr(models, "extra_names", None)  # (the image table's tv:NAME zoo)
    close = models.close_matches(model) if hasattr(models, "close_matches") else \
        difflib.get_close_matches(model, list(models), n=3, cutoff=0.6)
    raise ConfigError(f"model: unknown value {model!r} for task {task!r}"
                      + (f"; did you mean {' or '.join(close)}?" if close else "")
                      + f"; allowed: {', '.join(models)}"
                      + (", or tv:NAME for any torchvision classifier (e.g. tv:resnet50)" if extra else ""))


def _check_regularizer(task: str, model: str, combo: regularizers.Combination) -> None:
    """Every technique of the combination applies to the task, and the model accepts its hooks."""
    spec = tasks.get(task)
    if model not in spec.models:
        _unknown_model(task, model)
    accepts = spec.models[model].accepts
    for t in combo.techniques:
        if task not in t.tasks:
            hint = t.task_hint.get(task)
            raise ConfigError(f"regularizer: {t.name} is not for task {task!r} (only {', '.join(t.tasks)})"
                              + (f"; {hint}" if hint else "")
                              + f"; techniques for {task}: {', '.join(regularizers.names(task))}")
        needs = set(t.model_hooks)
        if not needs <= accepts:
            able = [m for m, ms in spec.models.items() if needs <= ms.accepts]
            raise ConfigError(f"regularizer: {t.name} is not supported by model {model!r}; "
                              f"models that support it: {', '.join(able) or '(none)'}")


def validate(cfg: TrialConfig) -> TrialConfig:
    _check_choice("task", cfg.task, tuple(tasks.names()))
    if cfg.model not in tasks.get(cfg.task).models:
        _unknown_model(cfg.task, cfg.model)
    _check_regularizer(cfg.task, cfg.model, cfg.combination)
    for key, allowed in CHOICES.items():
        _check_choice(key, getattr(cfg, key), allowed)
    for key, setting in RANGES.items():
        if getattr(cfg, key) is not None or key != "classes":  # classes: None = all of them
            setting.check(getattr(cfg, key))
    _check_model_input(cfg, tasks.get(cfg.task).models[cfg.model])
    if cfg.task == "image":
        _check_choice("dataset", cfg.dataset, tuple(datasets.names()))
        _check_class_list(cfg.class_list)
    elif cfg.dataset != TrialConfig.dataset:
        raise ConfigError(f"dataset: applies to the image task; for task {cfg.task!r} choose the corpus "
                          f"(corpus: {', '.join(CORPORA)})")
    if cfg.task == "pos":
        _check_corpus(cfg)
    if cfg.task == "pos" and cfg.val_fraction + cfg.test_fraction >= 1.0:
        raise ConfigError(f"val_fraction + test_fraction: {cfg.val_fraction + cfg.test_fraction} "
                          "leaves no training sentences; allowed: < 1")
    for key in ("download_url", "nltk_url"):
        _check_url(key, getattr(cfg, key))
    if cfg.download_md5 is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", cfg.download_md5):
        raise ConfigError(f"download_md5: {cfg.download_md5!r} is not an MD5 checksum; allowed: 32 hexadecimal digits")
    return cfg


def _check_corpus(cfg: TrialConfig) -> None:
    """The tag set is one the corpus has; a CoNLL-U corpus is the user's own file (``data``)."""
    allowed = CORPUS_TAGSETS[cfg.corpus]
    if cfg.tagset not in allowed:
        raise ConfigError(f"tagset: {cfg.tagset!r} is not a tag set of corpus {cfg.corpus!r}; "
                          f"allowed: {', '.join(allowed)}")
    if cfg.corpus == "conllu" and not cfg.data:
        raise ConfigError("data: corpus 'conllu' reads your own data; give --data PATH (a .conllu file "
                          "or a Universal Dependencies directory with <name>-ud-train.conllu)")


def _check_model_input(cfg: TrialConfig, spec: tasks.ModelSpec) -> None:
    if spec.fits is not None:
        why = spec.fits(cfg.image_size)
        if why:
            raise ConfigError(f"image_size: {cfg.image_size} does not fit model {cfg.model!r}: {why}")
    if spec.input_sizes is not None:
        lo, hi = spec.input_sizes
        if not lo <= cfg.image_size <= hi:
            raise ConfigError(f"image_size: {cfg.image_size} is out of range for model {cfg.model!r}; allowed: "
                              f"[{lo}, {'inf)' if hi == math.inf else f'{int(hi)}]'} (the input sides its layers accept)")
    if cfg.pretrained and not spec.pretrained:
        able = [m for m, ms in tasks.get(cfg.task).models.items() if ms.pretrained]
        raise ConfigError(f"pretrained: model {cfg.model!r} does not load pretrained weights; "
                          f"models that do: {', '.join(able) or '(none)'}")


def _check_class_list(class_list: tuple[str, ...] | None) -> None:
    """A classification problem: at least two classes, each named once."""
    if class_list is None:
        return
    seen: set[str] = set()
    for c in class_list:
        if c in seen:
            raise ConfigError(f"class_list: {c!r} is listed twice; allowed: each wnid once")
        seen.add(c)
    if len(class_list) < 2:
        raise ConfigError(f"class_list: {len(class_list)} class{'es' if len(class_list) != 1 else ''} "
                          f"({','.join(class_list) or 'empty'}); allowed: at least two wnids (a classifier "
                          "needs two classes)")


def _check_url(key: str, url: str | None) -> None:
    if url is None:
        return
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in URL_SCHEMES or (parts.scheme != "file" and not parts.netloc):
        raise ConfigError(f"{key}: {url!r} is not a URL; allowed: {', '.join(s + '://...' for s in URL_SCHEMES)}")


def _strengths(combo: regularizers.Combination, given: dict[str, Any]) -> dict[str, float]:
    """Every setting of the combination's techniques: the given value, else the default; checked
    against its range and the technique's own rules."""
    out: dict[str, float] = {}
    for t in combo.techniques:
        mine = {}
        for st in t.settings:
            raw = given.get(st.name)
            value = combo.defaults[st.name] if raw is None else _number(st.name, raw, st.integer)
            st.check(value)
            mine[st.name] = int(value) if st.integer else float(value)
        if t.check is not None:
            t.check(mine)
        out.update(mine)
    return out


def _number(key: str, value: Any, integer: bool) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {'an integer' if integer else 'a number'}, got {value!r}") from None
    if integer and math.isfinite(v) and not v.is_integer():
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    return v


def _suggest(combo: regularizers.Combination, owner: regularizers.Technique, task: str, model: str) -> str:
    """" (e.g. regularizer=l2+dropout)" when that combination is valid for the task and model."""
    if combo.name == "none":
        return ""
    try:
        both = regularizers.parse(f"{combo.name}+{owner.name}")
        _check_regularizer(task, model, both)
    except CatalogError:
        return ""
    return f" (e.g. regularizer={both.name})"


def _default_side(model: str, side: int) -> int:
    """The dataset's own image side, where the model takes it; else the study's 64 (resized on
    the device), so that e.g. CIFAR with the default AlexNet-style model works as it is."""
    spec = dict.get(tasks.get("image").models, model)  # (plain lookup: a tv: model takes any side it fits)
    if spec is None or spec.input_sizes is None or spec.input_sizes[0] <= side <= spec.input_sizes[1]:
        return side
    return TrialConfig.image_size


def make_config(values: dict[str, Any] | None = None, **overrides: Any) -> TrialConfig:
    """Build and validate a config from a plain dict; unknown keys are an error."""
    merged = dict(values or {})
    merged.update(overrides)
    catalog_settings = regularizers.settings()
    unknown = sorted(set(merged) - set(FIELDS) - set(catalog_settings))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; known settings: {', '.join(known_settings())}")
    given = {k: merged.pop(k) for k in list(merged) if k in catalog_settings}
    kwargs = {k: _coerce(k, v) for k, v in merged.items()}
    task = kwargs.get("task", TrialConfig.task)
    _check_choice("task", task, tuple(tasks.names()))
    for key, default in tasks.get(task).defaults.items():
        kwargs.setdefault(key, default)
    if task == "image":
        _check_choice("dataset", kwargs.get("dataset", TrialConfig.dataset), tuple(datasets.names()))
        for key, default in datasets.get(kwargs.get("dataset", TrialConfig.dataset)).defaults.items():
            if key == "image_size":
                default = _default_side(kwargs.get("model", TrialConfig.model), default)
            kwargs.setdefault(key, default)
    try:
        combo = regularizers.parse(kwargs.get("regularizer", TrialConfig.regularizer))
        model = kwargs.get("model", TrialConfig.model)
        _check_regularizer(task, model, combo)  # before the strengths: the first thing to fix
        # A strength that the chosen regularizer ignores is almost always a mistake in a space
        # file or on the command line: refuse it rather than record a number that had no effect
        # (its "off" value, e.g. dropout=0, is accepted).
        used = set(combo.setting_names())
        for key, value in given.items():
            owner, st = regularizers.setting(key)
            if key in used or value is None:
                continue
            if st.off is not None and _number(key, value, st.integer) == st.off:
                continue
            raise ConfigError(f"{key}: has no effect with regularizer {combo.name!r}; it belongs to "
                              f"{owner.name!r}{_suggest(combo, owner, task, model)}")
        kwargs["regularizer"] = combo.name
        kwargs["strengths"] = _strengths(combo, given)
        return validate(TrialConfig(**kwargs))
    except ConfigError:
        raise
    except CatalogError as e:
        raise ConfigError(str(e)) from None


def parse_set(items: list[str] | None) -> dict[str, str]:
    """``--set key=value`` pairs to a dict (values stay strings; make_config coerces them)."""
    out: dict[str, str] = {}
    known = known_settings()
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key not in known:
            raise ConfigError(f"--set {key}: unknown setting; known settings: {', '.join(known)}")
        out[key] = value.strip()
    return out
