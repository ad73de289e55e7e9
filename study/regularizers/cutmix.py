"""CutMix: paste a random box from another image; the box's area sets the label weights."""
from __future__ import annotations

import math

import torch

from .mixing import beta, partner
from .technique import MixedTargets, Setting, Technique, register


def box(h: int, w: int, lam: float, gen: torch.Generator) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a box of relative side sqrt(1 - lam) around a uniform centre, clipped to
    the image (Yun et al.'s rule; clipping makes the real area, not lam, the label weight)."""
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=gen))
    cx = int(torch.randint(0, w, (1,), generator=gen))
    return (max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w))


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator):
    lam = beta(alpha, gen)
    perm = partner(x.shape[0], gen, x.device)
    h, w = x.shape[-2:]
    y0, y1, x0, x1 = box(h, w, lam, gen)
    out = x.clone()
    out[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    kept = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the label weight of the original image
    return out, MixedTargets(y, y[perm], torch.full((x.shape[0],), kept, device=x.device))


register(Technique(
    name="cutmix", tasks=("image",), stage="data", label="CutMix", order=2,  # mixes the finished images
    summary="pastes a random box from another image; targets weighted by the box's area",
    reference="Yun et al. 2019, CutMix: Regularization strategy to train strong classifiers",
    settings=(Setting("cutmix_alpha", 1.0, 0.0, float("inf"), lo_open=True, label="CutMix Beta(α, α)"),),
    batch_transform=lambda x, y, s, gen, ctx: cutmix(x, y, s["cutmix_alpha"], gen),
    mixes_targets=True,
))
