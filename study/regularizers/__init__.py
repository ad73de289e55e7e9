"""The regularizer catalog: every technique is one module in this package that registers itself.

Importing the package imports every module in it, so adding a technique is adding a module (and
its tests and a space); nothing else lists technique names. A trial's ``regularizer`` is a
technique, an alias (``l2_dropout``) or a combination (``l2+dropout``, in any order); :func:`parse`
resolves it to a :class:`Combination` with one canonical name.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Mapping

from .technique import (ALIASES, STAGES, TECHNIQUES, Alias, CatalogError, MixedTargets, Setting,
                        Technique, register)

# Every module registers its technique on import (helper modules register nothing).
for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

NONE = "none"

__all__ = ["ALIASES", "Alias", "CatalogError", "Combination", "MixedTargets", "Setting", "Technique",
           "canonical", "catalog", "label", "listing", "names", "order_key", "parse", "register",
           "seed_table1", "seed_table1_all", "setting", "settings", "upgrade"]


@dataclass(frozen=True)
class Combination:
    """A resolved ``regularizer`` value: its techniques in canonical order and their defaults."""
    name: str  # canonical: the techniques joined by "+", in catalog order
    techniques: tuple[Technique, ...]
    defaults: Mapping[str, float] = field(default_factory=dict)  # every setting, combination defaults applied

    def uses(self, technique: str) -> bool:
        return any(t.name == technique for t in self.techniques)

    def setting_names(self) -> list[str]:
        return [s.name for t in self.techniques for s in t.settings]


def _key(t: Technique) -> tuple[int, int, int, str]:
    return (0 if t.name == NONE else 1, STAGES.index(t.stage), t.order, t.name)


def catalog() -> list[Technique]:
    """Every technique, in catalog order: none, then by stage (penalties ... data), then name."""
    return sorted(TECHNIQUES.values(), key=_key)


def names(task: str | None = None) -> list[str]:
    return [t.name for t in catalog() if task is None or task in t.tasks]


def settings() -> dict[str, Setting]:
    """Every strength setting of the catalog, by its (unique) key."""
    return {s.name: s for t in catalog() for s in t.settings}


def setting(key: str) -> tuple[Technique, Setting]:
    for t in TECHNIQUES.values():
        for s in t.settings:
            if s.name == key:
                return t, s
    raise KeyError(key)


def _alias_defaults(parts: tuple[str, ...]) -> dict[str, float]:
    for a in ALIASES.values():
        if set(a.techniques) == set(parts):
            return dict(a.defaults)
    return {}


def parse(value: str) -> Combination:
    """``l2+dropout``, ``dropout+l2`` and ``l2_dropout`` -> the same Combination (``l2+dropout``).

    Raises CatalogError for an unknown name (listing the catalog) or for techniques that cannot
    be combined (naming both and why)."""
    raw = str(value).strip()
    parts: list[str] = []
    for piece in (p.strip() for p in raw.split("+")):
        if piece in ALIASES or piece in TECHNIQUES:
            for name in (ALIASES[piece].techniques if piece in ALIASES else (piece,)):
                if name in parts:
                    raise CatalogError(f"regularizer: {name!r} appears twice in {raw!r}")
                parts.append(name)
        else:
            allowed = ", ".join(names() + sorted(ALIASES))
            raise CatalogError(f"regularizer: unknown technique {piece!r}; allowed: {allowed} "
                               "(or a combination such as l2+dropout)")
    techs = tuple(sorted((TECHNIQUES[p] for p in parts), key=_key))
    if len(techs) > 1 and any(t.name == NONE for t in techs):
        raise CatalogError(f"regularizer: {NONE!r} cannot be combined with other techniques ({raw!r})")
    for i, a in enumerate(techs):
        for b in techs[i + 1:]:
            why = _conflict(a, b)
            if why:
                raise CatalogError(f"regularizer: {a.name} and {b.name} cannot be combined: {why}")
    defaults = {s.name: s.default for t in techs for s in t.settings}
    defaults.update(_alias_defaults(tuple(t.name for t in techs)))
    return Combination("+".join(t.name for t in techs), techs, defaults)


def _conflict(a: Technique, b: Technique) -> str:
    shared = sorted(set(a.model_hooks) & set(b.model_hooks))
    if shared:
        return f"both set the model's {shared[0]}"
    if a.mixes_targets and b.mixes_targets:
        return "both replace the training targets"
    if a.loss_options and b.loss_options:
        return "both change the training loss"
    if a.param_groups and b.param_groups:
        return "both set the optimizer's parameter groups"
    return ""


def upgrade(task: str, value: str) -> str:
    """A ``regularizer`` recorded before the catalog, in today's terms (POS ``augment`` ->
    ``word_dropout``); anything else unchanged."""
    for t in TECHNIQUES.values():
        if t.formerly.get(task) == value:
            return t.name
    return value


def canonical(value: str) -> str:
    """The canonical name, or ``value`` unchanged if it is not in the catalog (old tables)."""
    try:
        return parse(value).name
    except CatalogError:
        return str(value)


def label(value: str) -> str:
    """Human label for reports: the alias' or technique's label, or the parts' labels joined."""
    try:
        combo = parse(value)
    except CatalogError:
        return str(value)
    for a in ALIASES.values():
        if set(a.techniques) == {t.name for t in combo.techniques}:
            return a.label
    return " + ".join(t.label for t in combo.techniques)


def seed_table1(value: str) -> tuple[float, float] | None:
    """The original report's Table 1 (train, val) loss for this regularizer, if it had it."""
    try:
        combo = parse(value)
    except CatalogError:
        return None
    for a in ALIASES.values():
        if set(a.techniques) == {t.name for t in combo.techniques}:
            return a.seed_table1
    return combo.techniques[0].seed_table1 if len(combo.techniques) == 1 else None


def seed_table1_all() -> dict[str, tuple[float, float]]:
    """Every technique or combination the original report had: canonical name -> (train, val)."""
    out = {t.name: t.seed_table1 for t in catalog() if t.seed_table1}
    out.update({parse(a.name).name: a.seed_table1 for a in ALIASES.values() if a.seed_table1})
    return out


def order_key(value: str) -> tuple:
    """Report and figure order: none, single techniques in catalog order, then combinations."""
    try:
        combo = parse(value)
    except CatalogError:
        return (9, (), str(value))
    order = {t.name: i for i, t in enumerate(catalog())}
    return (0 if combo.name == NONE else len(combo.techniques),
            tuple(order[t.name] for t in combo.techniques), combo.name)


def listing() -> list[str]:
    """``--list-regularizers``: one line per technique: name, tasks, settings=defaults."""
    lines = []
    for t in catalog():
        fields = [t.name, ",".join(t.tasks)] + [f"{s.name}={s.default:g}" for s in t.settings]
        lines.append(" ".join(fields))
    return lines
