"""MaxDropout: in training, zero the most active units of each sample, chosen after min-max
normalisation: units whose normalised activation exceeds ``1 - rate``.

Santos & Papa normalise over the whole batch tensor; here each sample is normalised on its own, so
a sample's output does not depend on the other samples in its batch. No rescaling (as the paper).
"""
from __future__ import annotations

import torch
from torch import nn

from .technique import Setting, Technique, register


class MaxDropout(nn.Module):
    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate <= 0.0:
            return x
        flat = x.flatten(1)
        lo = flat.min(dim=1, keepdim=True).values
        span = (flat.max(dim=1, keepdim=True).values - lo).clamp_min(torch.finfo(flat.dtype).tiny)
        drop = (flat - lo) / span > 1.0 - self.rate
        return flat.masked_fill(drop, 0.0).view_as(x)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


register(Technique(
    name="max_dropout", tasks=("image",), stage="model", label="MaxDropout",
    summary="zeroes the units whose min-max normalised activation exceeds 1 - rate (training only)",
    reference="Santos & Papa 2020, MaxDropout: Deep neural network regularization based on maximum output values",
    settings=(Setting("max_dropout", 0.3, 0.0, 1.0, hi_open=True, label="MaxDropout rate", off=0.0),),
    model_hooks={"dropout_layer": lambda s: (lambda: MaxDropout(s["max_dropout"]))},
))
