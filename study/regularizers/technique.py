"""What a regularization technique is: its settings and the hooks the training loop calls.

A technique module (one per technique in ``study/regularizers/``) builds one :class:`Technique`
and passes it to :func:`register`. Everything else (config validation, search-space validation,
``--set``, ``--list-regularizers``, the trial table's columns, the analysis' labels and order)
reads the catalog; no other list of technique names exists.

The hooks, each optional, all taking the trial's resolved strengths (``s``, a dict of this
technique's settings):

* ``model_hooks``: ``{key: fn(s) -> value}`` handed to the model builder. The keys a model
  accepts are declared by the model (``study.models``/``study.taggers``): ``dropout_layer``
  (a factory of the module placed at the model's dropout sites), ``stochastic_depth`` (a
  drop-path rate), ``recurrent_weights`` (``fn(name, weight) -> weight`` for the RNN's
  hidden-to-hidden matrices in training), ``embedding_weights`` (``fn(weight) -> weight`` in
  training). Two techniques that set the same key cannot be combined.
* ``batch_transform(x, y, s, gen, ctx) -> (x, y)``: training batches only. ``gen`` is the
  trial's CPU generator (data order and augmentation draws, saved in checkpoints); ``ctx``
  carries what the task knows (image: ``mean``; pos: ``pad``, ``unk``). A transform that
  mixes samples returns :class:`MixedTargets` as ``y`` and sets ``mixes_targets``.
* ``penalty(params, s) -> tensor``: a term added to the training objective (reported as the
  metric ``<name>_term``, not included in ``train_loss``), over the decay parameters (weight
  matrices and kernels; every parameter with ``l2_include_bias``).
* ``loss_options(s) -> dict``: keyword arguments for the training cross-entropy only
  (``label_smoothing``); clean-train, validation and test losses stay plain cross-entropy.
* ``param_groups(decay, other, s) -> list[dict]``: optimizer parameter groups (decoupled weight
  decay).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

STAGES = ("penalty", "optimizer", "loss", "model", "data")  # canonical order inside a combination


class CatalogError(ValueError):
    """A technique name, combination or strength is not allowed. Subclassed by ConfigError."""


@dataclass(frozen=True)
class Setting:
    """One strength setting: a flat config key (``--set name=value``, a space's ``search:``)."""
    name: str
    default: float
    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    log: bool = False  # plotted and usually searched on a log scale
    label: str = ""  # axis label in figures
    off: float | None = None  # the value that means "no effect" (accepted for an unused technique)

    def allowed(self) -> str:
        left = "(" if self.lo_open or self.lo == -math.inf else "["  # an infinite end is never included
        right = ")" if self.hi_open or self.hi == math.inf else "]"
        return f"{left}{_num(self.lo)}, {_num(self.hi)}{right}" + (" (integer)" if self.integer else "")

    def check(self, value: float) -> None:
        bad = (not math.isfinite(value) or value < self.lo or value > self.hi
               or (self.hi_open and value >= self.hi) or (self.lo_open and value <= self.lo)
               or (self.integer and not float(value).is_integer()))
        if bad:
            shown = int(value) if self.integer and math.isfinite(value) and float(value).is_integer() else value
            raise CatalogError(f"{self.name}: {shown!r} is out of range; allowed: {self.allowed()}")


def _num(v: float) -> str:
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if float(v).is_integer() and abs(v) < 1e15:  # (a bound like 2**32 - 1 in full, not 4.29497e+09)
        return str(int(v))
    return f"{v:g}"


@dataclass(frozen=True)
class MixedTargets:
    """Targets of a batch whose samples were mixed: ``lam * y_a + (1 - lam) * y_b`` per sample."""
    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: torch.Tensor  # (N,) weights of y_a

    def to(self, device: torch.device) -> "MixedTargets":
        return MixedTargets(self.y_a.to(device), self.y_b.to(device), self.lam.to(device))


@dataclass(frozen=True)
class Technique:
    name: str
    tasks: tuple[str, ...]
    stage: str  # one of STAGES
    label: str  # for reports and figure legends
    summary: str  # what it does, one line
    reference: str  # the paper, one line
    settings: tuple[Setting, ...] = ()
    order: int = 0  # position within its stage; data transforms run in this order (mixing last)
    check: Callable[[Mapping[str, float]], None] | None = None  # cross-setting rules
    model_hooks: Mapping[str, Callable[[Mapping[str, float]], Any]] = field(default_factory=dict)
    batch_transform: Callable[..., Any] | None = None
    mixes_targets: bool = False
    penalty: Callable[[list[torch.Tensor], Mapping[str, float]], torch.Tensor] | None = None
    loss_options: Callable[[Mapping[str, float]], dict[str, Any]] | None = None
    param_groups: Callable[..., list[dict[str, Any]]] | None = None
    task_hint: Mapping[str, str] = field(default_factory=dict)  # task -> what to use instead
    formerly: Mapping[str, str] = field(default_factory=dict)  # task -> its name in older records
    seed_table1: tuple[float, float] | None = None  # the original report's (train, val) loss, epoch 25

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"technique {self.name}: stage {self.stage!r} not in {STAGES}")

    def defaults(self) -> dict[str, float]:
        return {s.name: s.default for s in self.settings}


@dataclass(frozen=True)
class Alias:
    """Another name for a combination, with its own defaults (e.g. the study's ``l2_dropout``)."""
    name: str
    techniques: tuple[str, ...]
    label: str
    defaults: Mapping[str, float] = field(default_factory=dict)
    seed_table1: tuple[float, float] | None = None


TECHNIQUES: dict[str, Technique] = {}
ALIASES: dict[str, Alias] = {}


def register(item: Technique | Alias) -> Technique | Alias:
    """Add a technique or an alias to the catalog (called once, by its own module)."""
    if item.name in TECHNIQUES or item.name in ALIASES or "+" in item.name:
        raise ValueError(f"regularizer {item.name!r}: registered twice or contains '+'")
    if isinstance(item, Alias):
        ALIASES[item.name] = item
        return item
    taken = {s.name: t.name for t in TECHNIQUES.values() for s in t.settings}
    for s in item.settings:
        if s.name in taken:
            raise ValueError(f"setting {s.name!r} of {item.name!r} is already {taken[s.name]!r}'s")
    TECHNIQUES[item.name] = item
    return item
