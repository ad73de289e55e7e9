"""Draws shared by the sample-mixing techniques (mixup, CutMix), all from the trial's generator
so that a resumed trial repeats them exactly."""
from __future__ import annotations

import numpy as np
import torch


def beta(alpha: float, gen: torch.Generator) -> float:
    """lambda ~ Beta(alpha, alpha). torch's Beta sampler has no generator argument, so numpy's
    draws it from a seed taken from the trial's generator."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def partner(n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """The sample each sample is mixed with: a random permutation of the batch."""
    return torch.randperm(n, generator=gen).to(device)
