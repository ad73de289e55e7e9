"""L2: ``lambda * sum(w ** 2)`` added to the loss (the study's formulation: no 1/2)."""
import torch

from .technique import Setting, Technique, register


def penalty(params: list[torch.Tensor], s) -> torch.Tensor:
    return s["l2"] * torch.stack([p.pow(2).sum() for p in params]).sum()


register(Technique(
    name="l2", tasks=("image", "pos"), stage="penalty", label="L2 regularization",
    summary="adds lambda * sum(w^2) over weight matrices/kernels to the loss",
    reference="Krogh & Hertz 1991, A simple weight decay can improve generalization",
    settings=(Setting("l2", 1.5e-4, 0.0, float("inf"), log=True, label="L2 coefficient λ", off=0.0),),
    penalty=penalty, seed_table1=(1.654, 2.1456),
))
