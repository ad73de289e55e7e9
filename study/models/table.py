"""The image model table: named models (one module each registers itself) and ``tv:NAME``, any
classification model of torchvision's registry, resolved when it is first looked up."""
from __future__ import annotations

import difflib
from typing import Any, Mapping

from ..tasks.spec import ModelSpec

Hooks = Mapping[str, Any]  # the regularizer's model hooks (see study.regularizers.technique)
TV = "tv:"


class ModelTable(dict):
    """``MODELS[name]`` for a named model or ``tv:NAME``; iterating lists the named ones only
    (the zoo is open-ended: ``extra_names()`` lists it for suggestions)."""

    def __missing__(self, key: str) -> ModelSpec:
        from . import torchvision_zoo  # (torchvision is imported only when a tv: model is used)

        spec = torchvision_zoo.spec(key)
        if spec is None:
            raise KeyError(key)
        return spec

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        if isinstance(key, str) and key.startswith(TV):
            from . import torchvision_zoo

            return torchvision_zoo.spec(key) is not None
        return False

    def extra_names(self) -> list[str]:
        from . import torchvision_zoo

        return [TV + n for n in torchvision_zoo.classifiers()]

    def close_matches(self, name: str) -> list[str]:
        names = list(self) + self.extra_names()
        bare = [n for n in names if n.startswith(TV) and n[len(TV):] == name]  # "resnet50" -> "tv:resnet50"
        return bare or difflib.get_close_matches(name, names, n=3, cutoff=0.6)


MODELS = ModelTable()


def register(name: str, spec: ModelSpec) -> ModelSpec:
    if dict.__contains__(MODELS, name):
        raise ValueError(f"model {name!r} registered twice")
    MODELS[name] = spec
    return spec
