"""The image-classification task: uint8 tensors on the device, batched augmentation, a CNN.

The decoded dataset stays uint8 (N, H, W, 3) on the trial's device; each batch is gathered
by index, turned into float [0, 1] NCHW, passed through the regularizer's batch transforms
(training only: augmentation, Cutout, mixup/CutMix), normalised with the dataset's own channel
statistics (computed from the training split only: see study.datasets), and resized to
``image_size`` if that differs from the stored side.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from typing import TYPE_CHECKING

from ..datasets import ImageSplits, load_splits
from ..models import MODELS
from .spec import Task, TaskSpec, register

if TYPE_CHECKING:
    from ..config import TrialConfig
    from ..regularization import Regularization

def as_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """Zero-copy on CPU where possible (arrays from the object store are read-only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch warns on read-only numpy buffers
        t = torch.from_numpy(np.asarray(a))
    return t.to(device)


def to_float(x_u8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC -> float [0, 1] NCHW."""
    return x_u8.permute(0, 3, 1, 2).float().div_(255.0)


def clean_sample(n_train: int, size: int, seed: int) -> np.ndarray:
    """Fixed indices of the training split evaluated in eval mode every epoch."""
    rng = np.random.default_rng(seed + 1_000_003)
    return np.sort(rng.choice(n_train, size=min(size, n_train), replace=False))


def build(cfg: TrialConfig, data: ImageSplits, device: torch.device, reg: Regularization) -> Task:
    cuda = device.type == "cuda"
    fmt = torch.channels_last if (cuda and cfg.channels_last) else torch.contiguous_format
    model = MODELS[cfg.model].build(cfg, len(data.classes), reg.model_hooks).to(device, memory_format=fmt)
    mean = torch.tensor(data.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, 3, 1, 1)
    train_x, train_y = as_tensor(data.train_x, device), as_tensor(data.train_y, device)
    splits = {
        "val": (as_tensor(data.val_x, device), as_tensor(data.val_y, device)),
        "test": (as_tensor(data.test_x, device), as_tensor(data.test_y, device)),
    }
    idx = torch.from_numpy(clean_sample(len(data.train_y), cfg.train_eval_size or len(data.val_y),
                                        cfg.split_seed)).to(device)
    splits["train_clean"] = (train_x[idx], train_y[idx])

    def forward(m: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        x = (x - mean) / std
        if cfg.image_size != x.shape[-1]:
            x = F.interpolate(x, size=(cfg.image_size, cfg.image_size), mode="bilinear",
                              align_corners=False, antialias=False)
        return m(x.contiguous(memory_format=fmt))

    transforms = reg.transforms_batches
    ctx = {"mean": mean}  # Cutout fills holes with it: 0 after normalisation

    def train_batches(gen: torch.Generator, aug_gen: torch.Generator | None = None):
        order = torch.randperm(len(train_y), generator=gen).to(device)
        for i in range(0, len(order), cfg.batch_size):
            b = order[i:i + cfg.batch_size]
            x, y = to_float(train_x[b]), train_y[b]
            if transforms:
                x, y = reg.transform(x, y, gen if aug_gen is None else aug_gen, ctx)
            yield x, y

    def eval_set(x_u8: torch.Tensor, y: torch.Tensor):
        def batches():
            for i in range(0, len(y), cfg.eval_batch_size):
                yield to_float(x_u8[i:i + cfg.eval_batch_size]), y[i:i + cfg.eval_batch_size]
        return batches

    return Task(
        model=model,
        train_batches=train_batches,
        eval_sets={name: eval_set(*xy) for name, xy in splits.items()},
        forward=forward,
    )


register(TaskSpec(name="image", models=MODELS, load=load_splits, build=build, unit="images"))
