"""mixup: train on convex combinations of pairs of images and of their targets."""
from __future__ import annotations

import torch

from .mixing import beta, partner
from .technique import MixedTargets, Setting, Technique, register


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator):
    """``x' = lam * x + (1 - lam) * x[perm]``, targets ``(y, y[perm], lam)``; one lam per batch."""
    lam = beta(alpha, gen)
    perm = partner(x.shape[0], gen, x.device)
    mixed = x.mul(lam).add_(x[perm], alpha=1.0 - lam)
    return mixed, MixedTargets(y, y[perm], torch.full((x.shape[0],), lam, device=x.device))


register(Technique(
    name="mixup", tasks=("image",), stage="data", label="mixup", order=2,  # mixes the finished images
    summary="trains on lam*x_i + (1-lam)*x_j with targets mixed by lam ~ Beta(alpha, alpha)",
    reference="Zhang et al. 2018, mixup: Beyond empirical risk minimization",
    settings=(Setting("mixup_alpha", 0.2, 0.0, float("inf"), lo_open=True, label="mixup Beta(α, α)"),),
    batch_transform=lambda x, y, s, gen, ctx: mixup(x, y, s["mixup_alpha"], gen),
    mixes_targets=True,
))
