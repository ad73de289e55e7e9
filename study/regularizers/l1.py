"""L1: ``lambda * sum(|w|)`` added to the loss, over the same parameters as L2."""
import torch

from .technique import Setting, Technique, register


def penalty(params: list[torch.Tensor], s) -> torch.Tensor:
    return s["l1"] * torch.stack([p.abs().sum() for p in params]).sum()


register(Technique(
    name="l1", tasks=("image", "pos"), stage="penalty", label="L1 regularization",
    summary="adds lambda * sum(abs(w)) over weight matrices/kernels to the loss (sparsity)",
    reference="Tibshirani 1996, Regression shrinkage and selection via the lasso",
    settings=(Setting("l1", 1e-5, 0.0, float("inf"), log=True, label="L1 coefficient λ", off=0.0),),
    penalty=penalty,
))
