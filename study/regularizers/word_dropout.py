"""Word dropout: each real token of a training sentence becomes ``<unk>`` with probability p."""
from __future__ import annotations

import torch

from .technique import Setting, Technique, register


def word_dropout(ids: torch.Tensor, p: float, gen: torch.Generator, pad: int, unk: int) -> torch.Tensor:
    """Each non-pad token -> ``unk`` with probability ``p`` (draws on the trial's CPU generator)."""
    if p <= 0.0:
        return ids
    drop = torch.rand(ids.shape, generator=gen).to(ids.device) < p
    return ids.masked_fill(drop & (ids != pad), unk)


def transform(x, y, s, gen, ctx):
    ids, lengths = x
    return (word_dropout(ids, s["word_dropout"], gen, ctx["pad"], ctx["unk"]), lengths), y


register(Technique(
    name="word_dropout", tasks=("pos",), stage="data", label="Word dropout",
    summary="replaces each training token by the unknown-word token with probability p",
    reference="Iyyer et al. 2015, Deep unordered composition rivals syntactic methods (word dropout)",
    settings=(Setting("word_dropout", 0.1, 0.0, 1.0, hi_open=True, label="word dropout probability", off=0.0),),
    batch_transform=transform,
    formerly={"pos": "augment"},
))
