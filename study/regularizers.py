"""The explicit-penalty part of the regularizers: the L2 term added to the loss.

Dropout is a model setting (``cfg.dropout_rate``, read by the model builders) and augmentation
is a batch transform (``study.augment``); which of them a trial uses is decided in one place,
``study.config.ACTIVE``.
"""
from __future__ import annotations

import torch
from torch import nn


def l2_parameters(model: nn.Module, include_bias: bool) -> list[torch.Tensor]:
    """The tensors the L2 term covers.

    By default only weight matrices and kernels (ndim >= 2: conv, linear, embedding, RNN
    weights); biases and normalisation scales/shifts (ndim 1) are left out, the common practice
    for weight decay. ``include_bias=True`` takes every trainable parameter.
    """
    return [p for p in model.parameters() if p.requires_grad and (include_bias or p.ndim >= 2)]


def l2_penalty(params: list[torch.Tensor], lam: float) -> torch.Tensor | None:
    """``lam * sum(w ** 2)`` over ``params`` (the study's formulation, not lam/2), or None if off."""
    if lam == 0.0 or not params:
        return None
    return lam * torch.stack([p.pow(2).sum() for p in params]).sum()
