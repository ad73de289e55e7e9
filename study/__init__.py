"""regstudy: which regularizer, at which strength, closes the generalization gap best.

The Python API (study/api.py)::

    import study
    table = study.sweep("l2_dropout", data="tiny.zip", max_epochs=3, name="try")
    table, record, studies = study.load("results/try")
    gaps = study.analyse("results/try")
"""
from __future__ import annotations

import importlib

from .api import analyse, load  # (light: the heavy imports happen inside the functions)

__all__ = ["analyse", "load", "sweep"]


def __getattr__(name: str):
    # `study.sweep` is the (callable) submodule study/sweep.py: imported on first use, since it
    # imports Ray and torch. Once imported, the import system keeps it as the attribute.
    if name == "sweep":
        return importlib.import_module(".sweep", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
