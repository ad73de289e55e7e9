"""Label smoothing on the training loss only (evaluation losses stay plain cross-entropy)."""
from .technique import Setting, Technique, register

register(Technique(
    name="label_smoothing", tasks=("image", "pos"), stage="loss", label="Label smoothing",
    summary="trains on (1-eps) one-hot + eps/K uniform targets; evaluation loss is plain CE",
    reference="Szegedy et al. 2016, Rethinking the Inception architecture (label smoothing)",
    settings=(Setting("label_smoothing", 0.1, 0.0, 1.0, hi_open=True, label="smoothing ε", off=0.0),),
    loss_options=lambda s: {"label_smoothing": s["label_smoothing"]},
))
