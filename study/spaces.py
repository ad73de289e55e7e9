"""Search spaces: YAML files in ``search_spaces/``, validated once, turned into Optuna define-by-run.

Schema (every key optional except ``description``)::

    description: one line shown by --list-spaces
    fixed:            # any TrialConfig setting (task, model, regularizer, epochs, ...)
      regularizer: l2_dropout
      epochs: 10
    search:           # parameter -> distribution
      lr: {dist: loguniform, low: 1.0e-4, high: 3.0e-3}
      dropout: {dist: uniform, low: 0.0, high: 0.6}
      batch_size: {dist: categorical, choices: [64, 128]}
      regularizer:    # only for `regularizer`: a conditional choice
        dist: conditional
        choices:
          none: {}
          l2: {l2: {dist: loguniform, low: 1.0e-6, high: 1.0e-2}}
    sweep: {num_samples: 16, grace_period: 1, reduction_factor: 2, seed: 0}

Distributions: ``uniform``, ``loguniform``, ``int`` (``low``/``high`` integers, ``log`` optional),
``categorical`` (``choices``), ``conditional`` (``regularizer`` only).

A **comparison** space (``compare:``) lists the techniques to compare instead of a
``regularizer`` choice; each gets its own TPE study, its own ASHA and exactly
``trials_per_technique`` search trials (study.comparison). ``search:`` then holds the settings
searched for every technique (``lr``); ``none`` is always compared (added when not listed)::

    compare:
      none: {}
      l2: {l2: {dist: loguniform, low: 1.0e-6, high: 1.0e-2}}
      l2+dropout: {l2: {...}, dropout: {...}}
    sweep: {trials_per_technique: 8, grace_period: 2, reduction_factor: 2, seed: 0}

A **grid** space (``grid:``) lists fixed configurations instead of distributions; each runs with
``seeds`` seeds (``--seeds``), full budget, no search::

    grid:
      - {regularizer: none}
      - {regularizer: l2, l2: 1.5e-4}
    sweep: {seeds: 5}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import regularizers
from .config import FIELDS, ConfigError, known_settings, make_config

SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
DISTS = ("uniform", "loguniform", "int", "categorical", "conditional")
TOP_KEYS = ("description", "fixed", "search", "compare", "grid", "sweep")
SWEEP_KEYS = ("num_samples", "grace_period", "reduction_factor", "seed", "trials_per_technique", "seeds")
# Which sweep keys each kind of space may set (a key of another kind would be silently ignored).
KIND_SWEEP_KEYS = {"search": ("num_samples", "grace_period", "reduction_factor", "seed"),
                   "compare": ("trials_per_technique", "grace_period", "reduction_factor", "seed"),
                   "grid": ("seeds",)}
BASELINE = regularizers.NONE  # always in a comparison: every technique is tested against it
# Settings the same for every configuration of a grid: the run's seed, the data, the group the
# analysis compares within, and the epoch budget (set them under fixed:).
GRID_SHARED = ("seed", "task", "model", "dataset", "data", "corpus", "tagset", "classes", "class_list", "epochs",
               "split_seed", "val_fraction", "test_fraction")


class SpaceError(ConfigError):
    """A space file is missing, malformed, or names an unknown key or a bad range."""


@dataclass
class Space:
    name: str
    path: Path
    description: str
    fixed: dict[str, Any]
    search: dict[str, dict[str, Any]]
    sweep: dict[str, Any] = field(default_factory=dict)
    # technique (canonical name) -> {setting: distribution} searched for it (a comparison space)
    compare: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    grid: list[dict[str, Any]] = field(default_factory=list)  # fixed configurations (a grid space)

    @property
    def kind(self) -> str:
        """"compare", "grid" or "search" (a plain search space)."""
        return "compare" if self.compare else "grid" if self.grid else "search"

    def searched_names(self) -> list[str]:
        names: list[str] = ["regularizer"] if self.compare else []
        for key, spec in self.search.items():
            names.append(key)
            if spec["dist"] == "conditional":
                for sub in spec["choices"].values():
                    names += [k for k in sub if k not in names]
        for sub in self.compare.values():
            names += [k for k in sub if k not in names]
        if self.grid:  # (what varies between the configurations)
            names += [k for k in dict.fromkeys(k for c in self.grid for k in c) if k not in names]
        return names

    def technique_search(self, technique: str) -> dict[str, dict[str, Any]]:
        """A comparison's search space for one technique: the shared settings and its strengths."""
        return {**self.search, **self.compare[technique]}


def spaces_dir() -> Path:
    return SPACES_DIR


def available(directory: Path | None = None) -> dict[str, Path]:
    d = directory or spaces_dir()
    return {p.stem: p for p in sorted(d.glob("*.yaml"))}


def _err(path: Path, key: str, msg: str) -> SpaceError:
    return SpaceError(f"{path.name}: {key}: {msg}")


def _check_dist(path: Path, key: str, spec: Any, fixed: dict[str, Any]) -> None:
    if key not in known_settings():
        raise _err(path, f"search.{key}", f"unknown setting; known settings: {', '.join(known_settings())}")
    if not isinstance(spec, dict) or "dist" not in spec:
        raise _err(path, f"search.{key}", "expected a mapping with 'dist'")
    dist = spec["dist"]
    if dist not in DISTS:
        raise _err(path, f"search.{key}.dist", f"unknown distribution {dist!r}; allowed: {', '.join(DISTS)}")
    allowed = {"uniform": {"dist", "low", "high"}, "loguniform": {"dist", "low", "high"},
               "int": {"dist", "low", "high", "log"}, "categorical": {"dist", "choices"},
               "conditional": {"dist", "choices"}}[dist]
    extra = sorted(set(spec) - allowed)
    if extra:
        raise _err(path, f"search.{key}.{extra[0]}", f"unknown key for {dist}; allowed: {', '.join(sorted(allowed))}")
    if dist == "conditional":
        if key != "regularizer":
            raise _err(path, f"search.{key}.dist", "conditional is only for 'regularizer'")
        if not isinstance(spec.get("choices"), dict) or not spec["choices"]:
            raise _err(path, f"search.{key}.choices", "expected a mapping regularizer -> {param: distribution}")
        for reg, sub in spec["choices"].items():
            sub = sub or {}
            spec["choices"][reg] = sub
            _probe(path, f"search.regularizer.choices.{reg}", {**fixed, "regularizer": reg})
            for k, s in sub.items():
                _check_dist(path, k, s, {**fixed, "regularizer": reg})
        return
    if dist == "categorical":
        if not isinstance(spec.get("choices"), list) or not spec["choices"]:
            raise _err(path, f"search.{key}.choices", "expected a non-empty list")
        for v in spec["choices"]:
            _probe(path, f"search.{key}", {**fixed, key: v})
        return
    if dist != "int" and _integer_setting(key):
        raise _err(path, f"search.{key}.dist", f"{key} takes integers; use dist: int (or categorical)")
    for bound in ("low", "high"):
        if not isinstance(spec.get(bound), (int, float)) or isinstance(spec.get(bound), bool):
            raise _err(path, f"search.{key}.{bound}", "expected a number")
    low, high = spec["low"], spec["high"]
    if not low < high:
        raise _err(path, f"search.{key}", f"low ({low}) must be < high ({high})")
    if (dist == "loguniform" or spec.get("log")) and low <= 0:
        raise _err(path, f"search.{key}.low", f"log scale needs low > 0, got {low}")
    if dist == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise _err(path, f"search.{key}", "int bounds must be integers")
    # Both ends must make a valid trial (e.g. dropout < 1, lambda >= 0, contrast_lo <= contrast_hi).
    for v in (low, high):
        _probe(path, f"search.{key}", {**fixed, key: v})


def _integer_setting(key: str) -> bool:
    """Integer settings: a catalog strength declared integer, or an int field of the config."""
    st = regularizers.settings().get(key)
    if st is not None:
        return st.integer
    return key in FIELDS and FIELDS[key].type in ("int", "int | None")


def _probe(path: Path, key: str, values: dict[str, Any]) -> None:
    try:
        make_config(values)
    except ConfigError as e:
        raise _err(path, key, str(e)) from None


def load_space(name_or_path: str, directory: Path | None = None) -> Space:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.exists():
        if not p.is_file():
            raise SpaceError(f"--space {name_or_path}: is a directory, not a space file (a YAML file, or a "
                             "name from --list-spaces)")
        path = p
    else:
        spaces = available(directory)
        if name_or_path not in spaces:
            raise SpaceError(f"unknown space {name_or_path!r}; available: {', '.join(spaces) or '(none)'}")
        path = spaces[name_or_path]
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"--space {path}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" (line {line + 1})" if line is not None else ""
        raise SpaceError(f"{path.name}: malformed YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, dict):
        raise SpaceError(f"{path.name}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    unknown = sorted(set(doc) - set(TOP_KEYS))
    if unknown:
        raise _err(path, unknown[0], f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    for key in ("fixed", "search", "compare", "sweep"):
        if not isinstance(doc.get(key) or {}, dict):
            raise _err(path, key, f"expected a mapping, got {type(doc[key]).__name__}")
    fixed = doc.get("fixed") or {}
    search = doc.get("search") or {}
    sweep = doc.get("sweep") or {}
    for k in fixed:
        if k not in known_settings():
            raise _err(path, f"fixed.{k}", f"unknown setting; known settings: {', '.join(known_settings())}")
    for k in sweep:
        if k not in SWEEP_KEYS:
            raise _err(path, f"sweep.{k}", f"unknown key; allowed: {', '.join(SWEEP_KEYS)}")
    compare = _compare(path, doc.get("compare"))
    grid = _grid(path, doc.get("grid"))
    if compare and grid:
        raise _err(path, "grid", "a space either compares techniques (compare:) or runs fixed configurations "
                   "(grid:), not both")
    if grid and search:
        raise _err(path, "search", "a grid space runs fixed configurations: it searches nothing (move the "
                   "settings into each grid entry, or drop grid:)")
    space = Space(name=path.stem, path=path, description=str(doc.get("description", "")).strip(),
                  fixed=dict(fixed), search=dict(search), sweep=dict(sweep), compare=compare, grid=grid)
    for k in sweep:
        if k not in KIND_SWEEP_KEYS[space.kind]:
            raise _err(path, f"sweep.{k}", f"not for a {space.kind} space; allowed: "
                       f"{', '.join(KIND_SWEEP_KEYS[space.kind])}")
    validate_space(space)
    return space


def _compare(path: Path, value: Any) -> dict[str, dict[str, Any]]:
    """``compare:`` -> {canonical technique name: {setting: distribution}}, ``none`` first."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        raise _err(path, "compare", "expected a mapping technique -> {setting: distribution} (e.g. "
                   "l2: {l2: {dist: loguniform, low: 1.0e-6, high: 1.0e-2}}, none: {})")
    out: dict[str, dict[str, Any]] = {}
    for raw, sub in value.items():
        try:
            name = regularizers.parse(str(raw)).name
        except regularizers.CatalogError as e:
            raise _err(path, f"compare.{raw}", str(e)) from None
        if name in out:
            raise _err(path, f"compare.{raw}", f"the same technique as another entry ({name})")
        if not isinstance(sub or {}, dict):
            raise _err(path, f"compare.{raw}", "expected a mapping {setting: distribution} (or {} for none)")
        out[name] = dict(sub or {})
    # the baseline first, then as listed
    return {BASELINE: out.pop(BASELINE, {}), **out}


def _grid(path: Path, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not value or not all(isinstance(c, dict) for c in value):
        raise _err(path, "grid", "expected a non-empty list of configurations (mappings of settings, e.g. "
                   "- {regularizer: l2, l2: 1.5e-4})")
    return [dict(c) for c in value]


def validate_space(space: Space) -> None:
    """Check the fixed settings and every distribution (call again after command-line overrides)."""
    _probe(space.path, "fixed", space.fixed)
    if space.compare:
        for where, settings in (("fixed", space.fixed), ("search", space.search)):
            if "regularizer" in settings:
                raise _err(space.path, f"{where}.regularizer", "a comparison space names its techniques under "
                           "compare:; drop regularizer here")
        if space.compare.get(BASELINE):
            raise _err(space.path, f"compare.{BASELINE}", "the baseline has no strengths to search ({})")
    for tech, sub in space.compare.items():
        shared = sorted(set(sub) & set(space.search))
        if shared:
            raise _err(space.path, f"compare.{tech}.{shared[0]}", "is searched for every technique already "
                       "(search:); name it in one place")
    for key, spec in space.search.items():  # (a comparison's: valid for every technique, none too)
        _check_dist(space.path, key, spec, space.fixed)
    for tech, sub in space.compare.items():
        fixed = {**space.fixed, "regularizer": tech}
        _probe(space.path, f"compare.{tech}", fixed)
        for key, spec in sub.items():
            if key not in parse_settings(tech):
                raise _err(space.path, f"compare.{tech}.{key}", f"not a setting of {tech}; its settings: "
                           f"{', '.join(parse_settings(tech)) or '(none)'}")
            _check_dist(space.path, key, spec, fixed)
    for i, entry in enumerate(space.grid):
        for key in entry:
            if key not in known_settings():
                raise _err(space.path, f"grid[{i}].{key}",
                           f"unknown setting; known settings: {', '.join(known_settings())}")
            if key in GRID_SHARED:
                raise _err(space.path, f"grid[{i}].{key}", "is the same for every configuration (the runs are "
                           "compared at equal budgets and seeds, on the same data): set it under fixed:")
        _probe(space.path, f"grid[{i}]", {**space.fixed, **entry})
    if space.grid:
        names = [grid_name(space, i) for i in range(len(space.grid))]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise _err(space.path, "grid", f"two configurations are the same technique ({twice[0]}): a grid "
                       "compares techniques, one configuration each")


def parse_settings(technique: str) -> list[str]:
    return regularizers.parse(technique).setting_names()


def grid_name(space: Space, i: int) -> str:
    """The technique (canonical name) of a grid configuration."""
    return make_config({**space.fixed, **space.grid[i]}).regularizer


def _suggest(trial, key: str, spec: dict[str, Any]) -> Any:
    dist = spec["dist"]
    if dist == "uniform":
        return trial.suggest_float(key, spec["low"], spec["high"])
    if dist == "loguniform":
        return trial.suggest_float(key, spec["low"], spec["high"], log=True)
    if dist == "int":
        return trial.suggest_int(key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
    return trial.suggest_categorical(key, spec["choices"])


def define_by_run(search: dict[str, dict[str, Any]], trial) -> None:
    """Optuna define-by-run space: conditionals under ``regularizer`` are only sampled when chosen.

    A module-level function (bound with functools.partial) so Ray can pickle it on restore.
    """
    for key, spec in search.items():
        if spec["dist"] == "conditional":
            reg = trial.suggest_categorical(key, list(spec["choices"]))
            for sub_key, sub_spec in spec["choices"][reg].items():
                _suggest(trial, sub_key, sub_spec)
        else:
            _suggest(trial, key, spec)


def describe_all(directory: Path | None = None) -> list[tuple[str, str]]:
    out = []
    for name, path in available(directory).items():
        try:
            doc = yaml.safe_load(path.read_text()) or {}
            out.append((name, str(doc.get("description", "")).strip()))
        except yaml.YAMLError:
            out.append((name, "(malformed YAML)"))
    return out
