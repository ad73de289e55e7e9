"""One trial: train a model under one regularizer, report honest per-epoch metrics.

The loop is shared by every task. A task (``study.image_task``, ``study.pos_task``) supplies a
:class:`Task`: the model, a generator of training batches (augmented as the regularizer says),
the evaluation splits, and a ``forward``. Targets use ``IGNORE`` (-100) for positions that must
not count (padding, masked tokens), so every loss here is a sum over counted positions divided
by their number: a per-sample (per-token) mean, never a mean of batch means.

Metric names (shared by every task, the sweep and the analysis):
``epoch, train_loss, train_acc`` (as trained: dropout/augmentation on),
``train_clean_loss, train_clean_acc`` (eval mode, a fixed sample of the training split),
``val_loss, val_acc, gap_loss`` (val_loss - train_clean_loss), ``gap_acc`` (train_clean_acc - val_acc),
``learning_rate, l2_term, epoch_time_s, samples_per_s`` (images or tokens per second of training),
and on the final epoch ``test_loss, test_acc`` (an extra test set named ``test_oov`` gives
``test_loss_oov, test_acc_oov``).
"""
from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrialConfig, make_config
from .regularizers import l2_parameters, l2_penalty

IGNORE = -100
Batch = tuple[Any, torch.Tensor]
ReportFn = Callable[[dict[str, Any], Callable[[], dict[str, Any]]], None]


class Diverged(ArithmeticError):
    """The training loss became NaN or infinite."""


@dataclass
class Task:
    model: nn.Module
    # Training batches for one epoch, drawn (order, augmentation) from the given generator.
    train_batches: Callable[[torch.Generator], Iterator[Batch]]
    # Named evaluation sets; "train_clean" and "val" every epoch, "test*" after the last one.
    eval_sets: dict[str, Callable[[], Iterable[Batch]]]
    forward: Callable[[nn.Module, Any], torch.Tensor]
    info: dict[str, Any] = field(default_factory=dict)  # sizes, classes, vocabulary: for the log


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was asked for but no GPU is visible")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_task(cfg: TrialConfig, data: Any, device: torch.device) -> Task:
    if cfg.task == "image":
        from .image_task import build
    else:
        from .pos_task import build
    return build(cfg, data, device)


def _sums(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits = logits.reshape(-1, logits.shape[-1]).float()
    targets = targets.reshape(-1)
    mask = targets != IGNORE
    loss = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")
    correct = ((logits.argmax(-1) == targets) & mask).sum()
    return loss, correct, mask.sum()


def evaluate(task: Task, batches: Iterable[Batch], device: torch.device, amp: bool) -> tuple[float, float]:
    """(mean loss, accuracy) over every counted position, in eval mode."""
    task.model.eval()
    # Sums stay on the device (float64, as Python floats would be): one host sync per evaluation,
    # not three per batch, so the device never idles between evaluation batches.
    loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = torch.zeros((), device=device, dtype=torch.long)
    with torch.inference_mode(), _autocast(device, amp):
        for x, y in batches:
            l, c, n = _sums(task.forward(task.model, x), y)
            loss += l.double()
            correct += c
            count += n
    count_ = int(count.item())
    if count_ == 0:
        return math.nan, math.nan
    return float(loss.item()) / count_, int(correct.item()) / count_


def _autocast(device: torch.device, enabled: bool):
    # bf16 autocast only where it pays (CUDA); on CPU this is a no-op context.
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _optimizer(cfg: TrialConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr)


def _scheduler(cfg: TrialConfig, opt: torch.optim.Optimizer):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


def run_trial(
    cfg: TrialConfig | dict,
    report: ReportFn | None = None,
    *,
    data: Any = None,
    resume: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """Train one configuration; call ``report(metrics, get_state)`` after every epoch.

    ``data`` is the task's prepared data (e.g. ``ImageSplits``) or None to load it from the
    config. ``resume`` is a state from ``get_state()`` of an earlier epoch: training continues
    after that epoch with the same model, optimizer and random streams, so an interrupted and
    resumed trial produces the same numbers as an uninterrupted one. Returns the last metrics.
    Raises :class:`Diverged` after reporting an epoch whose training loss was not finite.
    """
    if isinstance(cfg, dict):
        cfg = make_config(cfg)
    device = torch.device(device) if device is not None else pick_device(cfg.device)
    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    use_amp = cfg.amp and device.type == "cuda"
    task = build_task(cfg, data, device)
    model = task.model
    opt = _optimizer(cfg, model)
    sched = _scheduler(cfg, opt)
    gen = torch.Generator().manual_seed(cfg.seed)  # data order and augmentation draws
    l2_params = l2_parameters(model, cfg.l2_include_bias)
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        sched.load_state_dict(resume["scheduler"])
        gen.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        if device.type == "cuda" and resume.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        start = int(resume["epoch"])

    def get_state() -> dict[str, Any]:
        # A snapshot, not views of live tensors: the caller may keep it while training goes on.
        return copy.deepcopy({
            "epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "generator": gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "config": cfg.to_dict(),
        })

    metrics: dict[str, Any] = {}
    for epoch in range(start + 1, cfg.epochs + 1):
        model.train()
        lr_now = opt.param_groups[0]["lr"]
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        count = torch.zeros((), device=device, dtype=torch.long)
        l2_last = 0.0
        for x, y in task.train_batches(gen):
            with _autocast(device, use_amp):
                l, c, n = _sums(task.forward(model, x), y)
            loss = l / n.clamp(min=1)
            penalty = l2_penalty(l2_params, cfg.l2_lambda)
            if penalty is not None:
                loss = loss + penalty
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += l.detach()
            correct += c
            count += n
            if penalty is not None:
                l2_last = penalty.detach()
        sched.step()
        n_seen = max(int(count.item()), 1)  # .item() also waits for the GPU, so timing is honest
        train_time = time.perf_counter() - t0
        train_loss = loss_sum.item() / n_seen
        clean_loss, clean_acc = evaluate(task, task.eval_sets["train_clean"](), device, use_amp)
        val_loss, val_acc = evaluate(task, task.eval_sets["val"](), device, use_amp)
        metrics = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_acc": int(correct.item()) / n_seen,
            "train_clean_loss": clean_loss,
            "train_clean_acc": clean_acc,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "gap_loss": val_loss - clean_loss,
            "gap_acc": clean_acc - val_acc,
            "learning_rate": lr_now,
            "l2_term": float(l2_last),
            "epoch_time_s": time.perf_counter() - t0,
            "samples_per_s": n_seen / train_time if train_time > 0 else math.nan,
        }
        diverged = not math.isfinite(train_loss) or not math.isfinite(val_loss)
        if epoch == cfg.epochs and not diverged:
            for name, batches in task.eval_sets.items():
                if name.startswith("test"):  # "test" -> test_loss/test_acc, "test_oov" -> test_loss_oov/...
                    suffix = name[len("test"):]
                    metrics[f"test_loss{suffix}"], metrics[f"test_acc{suffix}"] = evaluate(
                        task, batches(), device, use_amp)
        metrics["diverged"] = diverged
        if report is not None:
            report(metrics, get_state)
        if diverged:
            raise Diverged(f"training diverged at epoch {epoch}: train_loss={train_loss}, "
                           f"val_loss={val_loss} (lr={cfg.lr})")
    return metrics
