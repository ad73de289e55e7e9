"""The study's AlexNet-style CNN (the seed report's model), sized for 64x64 inputs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from ..tasks.spec import ModelSpec
from .table import Hooks, register

if TYPE_CHECKING:  # (config imports the task table, which imports this module)
    from ..config import TrialConfig


def tf_lrn(depth_radius: int = 5, bias: float = 2.0, alpha: float = 1e-4, beta: float = 0.75) -> nn.LocalResponseNorm:
    """TensorFlow's ``tf.nn.local_response_normalization`` as a PyTorch module.

    TF: ``x / (bias + alpha * sum_{|j-i|<=r} x_j^2) ** beta`` over a window of 2r+1 channels.
    PyTorch: ``x / (k + alpha' / size * sum x_j^2) ** beta`` with ``size`` channels, so
    ``size = 2r + 1`` and ``alpha' = alpha * size``.
    """
    size = 2 * depth_radius + 1
    return nn.LocalResponseNorm(size=size, alpha=alpha * size, beta=beta, k=bias)


class AlexNetStyle(nn.Module):
    """The study's custom CNN, sized for 64x64 inputs.

    conv 11x11/64 (stride 4, padding 5) -> ReLU -> LRN -> maxpool 3/2
    conv 5x5/192 (stride 1, padding 2)  -> ReLU -> LRN -> maxpool 3/2
    conv 3x3/384, 3x3/384, 3x3/256 (stride 1, padding 1), ReLU each -> maxpool 3/2
    flatten -> [dropout] -> fc 1024 -> ReLU -> [dropout] -> fc 1024 -> ReLU -> fc N

    Spatial sizes for a 64x64 input: 16 -> 7 -> 7 -> 3 -> 3 -> 1, so the classifier sees 256
    features. Stride 4 in the first layer is AlexNet's own; it keeps an epoch of the 25-class set
    within a minute on two CPU cores. LRN uses the study's TensorFlow parameters (see ``tf_lrn``).
    The dropout sites (``dropout_layer``: dropout, MaxDropout) are before each of the two dense
    layers, as in AlexNet; without a dropout technique they are identities.
    """

    def __init__(self, num_classes: int, dropout_layer: Callable[[], nn.Module] = nn.Identity):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=5), nn.ReLU(inplace=True), tf_lrn(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), tf_lrn(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            dropout_layer(), nn.LazyLinear(1024), nn.ReLU(inplace=True),
            dropout_layer(), nn.Linear(1024, 1024), nn.ReLU(inplace=True),
            nn.Linear(1024, num_classes),
        )
        # Materialise the lazy layer now (64x64 is the model's design size) so parameter
        # counts, the optimizer and checkpoints all see real tensors. In eval mode: a dropout
        # site in training mode would draw its mask from the global generator before the layer's
        # initial weights, so the same seed would start dropout and no dropout from different
        # weights (the paired comparison needs the same ones).
        with torch.no_grad():
            self.eval()
            self.classifier(self.features(torch.zeros(1, 3, 64, 64)))
            self.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def _alexnet(cfg: TrialConfig, num_classes: int, hooks: Hooks) -> nn.Module:
    return AlexNetStyle(num_classes, dropout_layer=hooks.get("dropout_layer", nn.Identity))


# AlexNetStyle's classifier is sized for a 1x1x256 feature map, which sides 57..88 give
# (smaller ones vanish in the pooling).
register("alexnet", ModelSpec(_alexnet, accepts=frozenset({"dropout_layer"}), input_sizes=(57, 88)))
