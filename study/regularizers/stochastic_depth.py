"""Stochastic depth (drop-path): residual blocks are skipped per sample in training, at rates
rising linearly with depth to ``stochastic_depth`` (torchvision's own rule for EfficientNet)."""
from .technique import Setting, Technique, register

register(Technique(
    name="stochastic_depth", tasks=("image",), stage="model", label="Stochastic depth",
    summary="skips residual blocks per sample in training (rate rising with depth to p)",
    reference="Huang et al. 2016, Deep networks with stochastic depth",
    settings=(Setting("stochastic_depth", 0.2, 0.0, 1.0, hi_open=True, label="drop-path rate (last block)",
                      off=0.0),),
    model_hooks={"stochastic_depth": lambda s: s["stochastic_depth"]},
))
