"""ResNet-18, in the small-image form of the CIFAR regularization papers (Cutout, mixup, CutMix):
for inputs of 64 px or less the 7x7/2 stem and its max-pool become one 3x3/1 convolution, so a
32 px image reaches the last stage at 4x4 rather than 1x1. Above 64 px it is torchvision's
ResNet-18 as it is. Dropout, when chosen, is inserted before the final linear layer."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import nn

from ..tasks.spec import ModelSpec
from .table import Hooks, register
from .weights import load_pretrained

if TYPE_CHECKING:
    from ..config import TrialConfig

SMALL = 64  # the largest side that gets the small-image stem


def _resnet18(cfg: TrialConfig, num_classes: int, hooks: Hooks) -> nn.Module:
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=num_classes)
    small = cfg.image_size <= SMALL
    if cfg.pretrained:  # (the small stem has another shape: it starts from scratch)
        load_pretrained(model, cfg.pretrained, "resnet18", fresh=("fc.",) + (("conv1.",) if small else ()))
    if small:
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        model.maxpool = nn.Identity()
    model.fc = nn.Sequential(hooks.get("dropout_layer", nn.Identity)(), model.fc)
    return model


# Small form: the side halves three times (stride-2 stages), so 9 px leaves 2x2 at the last
# stage: a training batch of one image still has 4 values per channel for batch norm.
register("resnet18", ModelSpec(_resnet18, accepts=frozenset({"dropout_layer"}), input_sizes=(9, math.inf),
                               pretrained=True))
