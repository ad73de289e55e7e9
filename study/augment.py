"""Batched image augmentation as tensor ops on the trial's device (no per-image Python).

Semantics, per image, each drawn independently from the trial's generator:
- left-right flip with probability ``flip_lr_p``; up-down flip with probability ``flip_ud_p``;
- brightness: add ``delta ~ U(-brightness, brightness)`` to every pixel (``tf.image.random_brightness``,
  the study's formulation with max_delta 0.4), then clamp to [0, 1];
- contrast: factor ``c ~ U(contrast_lo, contrast_hi)``, blend with the image's mean grey level
  (torchvision ``adjust_contrast``);
- saturation: factor ``s ~ U(saturation_lo, saturation_hi)``, blend with the grey image
  (torchvision ``adjust_saturation``).
Inputs and outputs are float images in [0, 1], shape (N, 3, H, W).
"""
from __future__ import annotations

import torch

from .config import TrialConfig


def _grey(x: torch.Tensor) -> torch.Tensor:
    # ITU-R 601-2 luma, the weights torchvision's rgb_to_grayscale uses.
    r, g, b = x.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    return (ratio * x + (1.0 - ratio) * other).clamp_(0.0, 1.0)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device, dtype) -> torch.Tensor:
    u = torch.rand(n, generator=gen, device=gen.device).to(device=device, dtype=dtype)
    return (lo + (hi - lo) * u).view(n, 1, 1, 1)


def augment_batch(x: torch.Tensor, cfg: TrialConfig, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    dev, dt = x.device, x.dtype

    def coin(p: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen, device=gen.device) < p).to(dev).view(n, 1, 1, 1)

    x = torch.where(coin(cfg.flip_lr_p), x.flip(-1), x)
    x = torch.where(coin(cfg.flip_ud_p), x.flip(-2), x)
    if cfg.brightness > 0:
        x = (x + _uniform(n, -cfg.brightness, cfg.brightness, gen, dev, dt)).clamp_(0.0, 1.0)
    if (cfg.contrast_lo, cfg.contrast_hi) != (1.0, 1.0):
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = _blend(x, mean, _uniform(n, cfg.contrast_lo, cfg.contrast_hi, gen, dev, dt))
    if (cfg.saturation_lo, cfg.saturation_hi) != (1.0, 1.0):
        x = _blend(x, _grey(x), _uniform(n, cfg.saturation_lo, cfg.saturation_hi, gen, dev, dt))
    return x
