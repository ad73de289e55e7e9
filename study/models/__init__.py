"""Image models: a table filled by the modules of this package (one model each), plus ``tv:NAME``
for any classification model of torchvision's registry (``study.models.torchvision_zoo``)."""
from __future__ import annotations

import importlib
import pkgutil

from .table import MODELS, TV, Hooks, ModelTable, register
from .weights import load_pretrained, pretrained_path

_HELPERS = {"table", "weights", "torchvision_zoo"}
for _m in pkgutil.iter_modules(__path__):
    if _m.name not in _HELPERS:
        importlib.import_module(f"{__name__}.{_m.name}")

from .alexnet import AlexNetStyle, tf_lrn  # noqa: E402  (re-exported: the study's model)

__all__ = ["MODELS", "TV", "AlexNetStyle", "Hooks", "ModelTable", "load_pretrained", "pretrained_path",
           "register", "tf_lrn"]
