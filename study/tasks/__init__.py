"""The task table: each task is one module in this package that registers a :class:`TaskSpec`.

The table is filled on first use (not on import), so that models and data modules can import
the shared types in ``study.tasks.spec`` without importing every task.
"""
from __future__ import annotations

import importlib
import pkgutil

from .spec import IGNORE, TASKS, Batch, ModelSpec, Task, TaskSpec, register

__all__ = ["IGNORE", "Batch", "ModelSpec", "Task", "TaskSpec", "get", "names", "register", "table"]


_loaded = False


def table() -> dict[str, TaskSpec]:
    global _loaded
    if not _loaded:  # (a task module imported directly has registered itself already)
        for m in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{m.name}")
        _loaded = True
    return TASKS


def names() -> list[str]:
    return list(table())


def get(name: str) -> TaskSpec:
    t = table()
    if name not in t:
        raise KeyError(name)
    return t[name]
