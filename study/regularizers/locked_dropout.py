"""Locked (variational) dropout: one mask per sequence, shared by every time step."""
from __future__ import annotations

import torch
from torch import nn

from .technique import Setting, Technique, register


class LockedDropout(nn.Module):
    """On (B, T, D): a (B, 1, D) Bernoulli(1 - p) mask scaled by 1/(1 - p), the same at every step."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0.0:
            return x
        mask = torch.empty(x.shape[0], 1, x.shape[2], device=x.device, dtype=x.dtype).bernoulli_(1.0 - self.p)
        return x * mask.div_(1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


register(Technique(
    name="locked_dropout", tasks=("pos",), stage="model", label="Locked dropout",
    summary="dropout on embeddings and RNN outputs with one mask per sequence for all time steps",
    reference="Gal & Ghahramani 2016, A theoretically grounded application of dropout in RNNs",
    settings=(Setting("locked_dropout", 0.3, 0.0, 1.0, hi_open=True, label="locked dropout rate", off=0.0),),
    model_hooks={"dropout_layer": lambda s: (lambda: LockedDropout(s["locked_dropout"]))},
))
