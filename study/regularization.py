"""How one trial's regularizer acts: the catalog's hooks gathered for its config.

``study.training`` and the tasks call this, never a technique by name: the model builder gets
``model_hooks``, training batches go through ``transform``, the objective adds ``penalties``
and uses ``loss_options``, and the optimizer is built from ``param_groups``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from .config import TrialConfig
from .regularizers import Combination
from .regularizers.penalties import decay_parameters


@dataclass(frozen=True)
class Regularization:
    combination: Combination
    strengths: Mapping[str, float]
    include_bias: bool = False

    @property
    def model_hooks(self) -> dict[str, Any]:
        return {key: make(self.strengths) for t in self.combination.techniques
                for key, make in t.model_hooks.items()}

    @property
    def transforms_batches(self) -> bool:
        return any(t.batch_transform for t in self.combination.techniques)

    def transform(self, x: Any, y: Any, gen: torch.Generator, ctx: Mapping[str, Any]) -> tuple[Any, Any]:
        """A training batch through every batch transform, in catalog order (``Technique.order``:
        flips and colour, then Cutout, then mixing)."""
        for t in self.combination.techniques:
            if t.batch_transform is not None:
                x, y = t.batch_transform(x, y, self.strengths, gen, ctx)
        return x, y

    def penalties(self, covered: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``{technique: term}`` for the terms added to the objective (metrics ``<name>_term``)."""
        if not covered:
            return {}
        return {t.name: t.penalty(covered, self.strengths) for t in self.combination.techniques
                if t.penalty is not None}

    @property
    def loss_options(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in self.combination.techniques:
            if t.loss_options is not None:
                out.update(t.loss_options(self.strengths))
        return out

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        for t in self.combination.techniques:
            if t.param_groups is not None:
                return t.param_groups(*decay_parameters(model, self.include_bias), self.strengths)
        # One group in the model's own parameter order: optimizer state is saved by position, so
        # checkpoints written before the catalog (and by any other run) restore onto it.
        return [{"params": list(model.parameters())}]

    def covered_parameters(self, model: nn.Module) -> list[torch.Tensor]:
        return decay_parameters(model, self.include_bias)[0]


def for_config(cfg: TrialConfig) -> Regularization:
    return Regularization(cfg.combination, dict(cfg.strengths), cfg.l2_include_bias)
