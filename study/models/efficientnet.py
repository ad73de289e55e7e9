"""torchvision's EfficientNet-B0, as the seed report used it (224 px, optionally pretrained)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn

from ..tasks.spec import ModelSpec
from .table import Hooks, register
from .weights import load_pretrained

if TYPE_CHECKING:
    from ..config import TrialConfig


def _efficientnet(cfg: TrialConfig, num_classes: int, hooks: Hooks) -> nn.Module:
    # torchvision's own stochastic depth (block i of n at rate p*i/n) and classifier dropout are
    # off unless their techniques are chosen, so the techniques under study are the only regularizers.
    from torchvision.models import efficientnet_b0  # (here: validating a config needs no torchvision)

    model = efficientnet_b0(weights=None, dropout=0.0, num_classes=num_classes,
                            stochastic_depth_prob=hooks.get("stochastic_depth", 0.0))
    if cfg.pretrained:
        load_pretrained(model, cfg.pretrained, "efficientnet_b0", fresh=("classifier.1.",))
    model.classifier[0] = hooks.get("dropout_layer", nn.Identity)()  # the classifier's dropout site
    return model


# B0 downsamples 32x and its last batch norm needs two values per channel, so a batch of one
# image needs a side of at least 33.
register("efficientnet_b0", ModelSpec(_efficientnet, accepts=frozenset({"dropout_layer", "stochastic_depth"}),
                                      input_sizes=(33, math.inf), pretrained=True))
