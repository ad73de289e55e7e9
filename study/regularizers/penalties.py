"""Which parameters a weight penalty or weight decay covers (one rule for L1, L2 and decay)."""
from __future__ import annotations

import torch
from torch import nn


def decay_parameters(model: nn.Module, include_bias: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(covered, the rest).

    By default only weight matrices and kernels (ndim >= 2: conv, linear, embedding, RNN
    weights); biases and normalisation scales/shifts (ndim 1) are left out, the common practice
    for weight decay. ``include_bias=True`` covers every trainable parameter.
    """
    covered, rest = [], []
    for p in model.parameters():
        if p.requires_grad:
            (covered if include_bias or p.ndim >= 2 else rest).append(p)
    return covered, rest
