"""Embedding dropout: whole word types are dropped (their embedding row zeroed for every
occurrence in the batch), the rest scaled by 1/(1 - p); training only."""
from __future__ import annotations

import torch

from .technique import Setting, Technique, register


def drop_types(p: float):
    def fn(weight: torch.Tensor) -> torch.Tensor:
        keep = torch.empty(weight.shape[0], 1, device=weight.device, dtype=weight.dtype).bernoulli_(1.0 - p)
        return weight * keep.div_(1.0 - p)
    return fn


register(Technique(
    name="embedding_dropout", tasks=("pos",), stage="model", label="Embedding dropout",
    summary="drops whole word types: every occurrence of a dropped word gets a zero embedding",
    reference="Gal & Ghahramani 2016, A theoretically grounded application of dropout in RNNs",
    settings=(Setting("embedding_dropout", 0.1, 0.0, 1.0, hi_open=True, label="embedding dropout rate",
                      off=0.0),),
    model_hooks={"embedding_weights": lambda s: drop_types(s["embedding_dropout"])},
))
