"""Weight drop (DropConnect on the recurrent weights): in training, each hidden-to-hidden matrix
is masked elementwise (scaled by 1/(1 - p)) once per batch; input weights are left alone."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .technique import Setting, Technique, register


def drop_recurrent(p: float):
    def fn(name: str, weight: torch.Tensor) -> torch.Tensor:
        return F.dropout(weight, p, training=True) if name.startswith("weight_hh") else weight
    return fn


register(Technique(
    name="weight_drop", tasks=("pos",), stage="model", label="Weight drop",
    summary="DropConnect on the RNN's hidden-to-hidden weights, one mask per batch (training only)",
    reference="Merity et al. 2018, Regularizing and optimizing LSTM language models (AWD-LSTM)",
    settings=(Setting("weight_drop", 0.5, 0.0, 1.0, hi_open=True, label="weight drop rate", off=0.0),),
    model_hooks={"recurrent_weights": lambda s: drop_recurrent(s["weight_drop"])},
))
