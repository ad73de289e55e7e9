"""Cutout: mask square holes at random centres (clipped at the border) in training images."""
from __future__ import annotations

import torch

from .technique import Setting, Technique, register


def hole_mask(n: int, h: int, w: int, size: int, holes: int, p: float, gen: torch.Generator,
              device: torch.device) -> torch.Tensor:
    """(N, 1, H, W) bool: True inside a hole. Each image gets ``holes`` squares of side ``size``
    centred uniformly over the image (a hole may hang over the border, as in DeVries & Taylor),
    with probability ``p``."""
    cy = torch.randint(0, h, (n, holes), generator=gen)
    cx = torch.randint(0, w, (n, holes), generator=gen)
    on = torch.rand(n, generator=gen) < p
    rows = torch.arange(h)
    cols = torch.arange(w)
    y0, x0 = cy - size // 2, cx - size // 2
    in_y = (rows[None, None, :] >= y0[..., None]) & (rows[None, None, :] < (y0 + size)[..., None])  # N,K,H
    in_x = (cols[None, None, :] >= x0[..., None]) & (cols[None, None, :] < (x0 + size)[..., None])  # N,K,W
    mask = (in_y[..., :, None] & in_x[..., None, :]).any(dim=1) & on[:, None, None]
    return mask.unsqueeze(1).to(device)


def cutout(x: torch.Tensor, s, gen: torch.Generator, fill: torch.Tensor) -> torch.Tensor:
    """Holes take ``fill`` (the normalisation mean: 0 after normalisation, as in the paper)."""
    n, _, h, w = x.shape
    mask = hole_mask(n, h, w, int(s["cutout_size"]), int(s["cutout_holes"]), s["cutout_p"], gen, x.device)
    return torch.where(mask, fill.to(x.dtype), x)


register(Technique(
    name="cutout", tasks=("image",), stage="data", label="Cutout", order=1,  # after augment, before mixing
    summary="masks square holes (side size, n holes, probability p) at random centres",
    reference="DeVries & Taylor 2017, Improved regularization of CNNs with Cutout",
    settings=(Setting("cutout_size", 16, 1, float("inf"), integer=True, label="Cutout hole side (px)"),
              Setting("cutout_holes", 1, 1, 64, integer=True, label="Cutout holes per image"),
              Setting("cutout_p", 1.0, 0.0, 1.0, label="Cutout probability")),
    batch_transform=lambda x, y, s, gen, ctx: (cutout(x, s, gen, ctx["mean"]), y),
))
