"""Stochastic depth (drop-path): residual blocks are skipped per sample in training, at rates
rising linearly with depth: block i of n gets ``stochastic_depth * i / n`` (torchvision's own rule
for EfficientNet; the last of B0's 16 blocks gets 15/16 of the setting)."""
from .technique import Setting, Technique, register

register(Technique(
    name="stochastic_depth", tasks=("image",), stage="model", label="Stochastic depth",
    summary="skips residual blocks per sample in training (block i of n at rate p*i/n)",
    reference="Huang et al. 2016, Deep networks with stochastic depth",
    settings=(Setting("stochastic_depth", 0.2, 0.0, 1.0, hi_open=True, label="drop-path rate p (block i of n: p*i/n)",
                      off=0.0),),
    model_hooks={"stochastic_depth": lambda s: s["stochastic_depth"]},
))
