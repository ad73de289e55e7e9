"""Dropout at the model's dropout sites: before each dense layer (AlexNet), EfficientNet's
classifier dropout, the tagger's embeddings and RNN outputs (and between stacked RNN layers)."""
from torch import nn

from .technique import Setting, Technique, register

register(Technique(
    name="dropout", tasks=("image", "pos"), stage="model", label="Dropout",
    summary="zeroes each unit with probability p in training (scaled by 1/(1-p))",
    reference="Srivastava et al. 2014, Dropout: a simple way to prevent neural networks from overfitting",
    settings=(Setting("dropout", 0.25, 0.0, 1.0, hi_open=True, label="dropout rate p", off=0.0),),
    model_hooks={"dropout_layer": lambda s: (lambda: nn.Dropout(s["dropout"]))},
    seed_table1=(2.033, 2.229),
))
