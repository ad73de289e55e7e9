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

import math

import torch

from .technique import CatalogError, Setting, Technique, register


def _grey(x: torch.Tensor) -> torch.Tensor:
    # ITU-R 601-2 luma, the weights torchvision's rgb_to_grayscale uses.
    r, g, b = x.unbind(dim=1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    return (ratio * x + (1.0 - ratio) * other).clamp_(0.0, 1.0)


def _draws(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """The batch's uniforms in [0, 1), one row per transform (lr flip, ud flip, brightness,
    contrast, saturation), drawn in one call and moved to the device in one copy.

    The generator is the trial's CPU augmentation generator (saved on resume; not the data order's).
    A plain ``.to("cuda")`` of a pageable tensor synchronises the stream, i.e. waits for the
    previous batch's backward pass, once per copy; a pinned, non-blocking copy does not.
    """
    u = torch.rand(5, n, generator=gen, device=gen.device)
    if u.device == device:
        return u
    if device.type == "cuda":
        return u.pin_memory().to(device, non_blocking=True)
    return u.to(device)


def _between(u: torch.Tensor, lo: float, hi: float, dtype: torch.dtype) -> torch.Tensor:
    return (lo + (hi - lo) * u.to(dtype)).view(-1, 1, 1, 1)


def augment_batch(x: torch.Tensor, s, gen: torch.Generator) -> torch.Tensor:
    n = x.shape[0]
    dt = x.dtype
    lr, ud, bright, contrast, sat = _draws(n, gen, x.device)
    x = torch.where((lr < s["flip_lr_p"]).view(n, 1, 1, 1), x.flip(-1), x)
    x = torch.where((ud < s["flip_ud_p"]).view(n, 1, 1, 1), x.flip(-2), x)
    if s["brightness"] > 0:
        x = (x + _between(bright, -s["brightness"], s["brightness"], dt)).clamp_(0.0, 1.0)
    if (s["contrast_lo"], s["contrast_hi"]) != (1.0, 1.0):
        mean = _grey(x).mean(dim=(1, 2, 3), keepdim=True)
        x = _blend(x, mean, _between(contrast, s["contrast_lo"], s["contrast_hi"], dt))
    if (s["saturation_lo"], s["saturation_hi"]) != (1.0, 1.0):
        x = _blend(x, _grey(x), _between(sat, s["saturation_lo"], s["saturation_hi"], dt))
    return x


def _check(s) -> None:
    for name in ("contrast", "saturation"):
        lo, hi = s[f"{name}_lo"], s[f"{name}_hi"]
        if lo > hi:
            raise CatalogError(f"{name}_lo/{name}_hi: range reversed ({lo} > {hi}); "
                               f"allowed: 0 <= {name}_lo <= {name}_hi")


INF = math.inf
register(Technique(
    name="augment", tasks=("image",), stage="data", label="Data augmentation",
    summary="the study's five transforms: random flips, brightness, contrast, saturation",
    reference="the original report's augmentation (tf.image random_flip/brightness/contrast/saturation)",
    settings=(
        Setting("flip_lr_p", 0.5, 0.0, 1.0, label="left-right flip probability"),
        Setting("flip_ud_p", 0.5, 0.0, 1.0, label="up-down flip probability"),
        Setting("brightness", 0.4, 0.0, 1.0, label="brightness max delta (pixel range 0–1)"),
        Setting("contrast_lo", 0.8, 0.0, INF, label="contrast factor, lower bound"),
        Setting("contrast_hi", 1.2, 0.0, INF, label="contrast factor, upper bound"),
        Setting("saturation_lo", 0.7, 0.0, INF, label="saturation factor, lower bound"),
        Setting("saturation_hi", 1.3, 0.0, INF, label="saturation factor, upper bound"),
    ),
    check=_check,
    batch_transform=lambda x, y, s, gen, ctx: (augment_batch(x, s, gen), y),
    task_hint={"pos": "for tagging, word dropout (the former POS `augment`) is `word_dropout`"},
    seed_table1=(1.4923, 1.9847),
))
