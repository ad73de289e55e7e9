"""Decoupled weight decay: each step shrinks the covered weights by ``lr * wd * w``, apart from the
gradient step (AdamW with Adam; SGD gets the same decoupled rule, see ``study.training``)."""
from .technique import Setting, Technique, register


def param_groups(decay, other, s) -> list[dict]:
    groups = [{"params": decay, "weight_decay": s["weight_decay"]}]
    if other:
        groups.append({"params": other, "weight_decay": 0.0})
    return groups


register(Technique(
    name="weight_decay", tasks=("image", "pos"), stage="optimizer", label="Decoupled weight decay",
    summary="w <- w - lr*wd*w each step, separate from the gradient (AdamW; decoupled SGD)",
    reference="Loshchilov & Hutter 2019, Decoupled weight decay regularization",
    settings=(Setting("weight_decay", 1e-2, 0.0, float("inf"), log=True, label="decoupled weight decay wd",
                      off=0.0),),
    param_groups=param_groups,
))
