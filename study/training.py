"""One trial: train a model under one regularizer, report honest per-epoch metrics.

The loop is shared by every task and names none: the task table (``study.tasks``) builds a
:class:`~study.tasks.Task` (the model, training batches with the regularizer's transforms, the
evaluation splits, a ``forward``), and the regularizer acts through ``study.regularization``.
Every loss here is a sum over counted positions (targets != IGNORE) divided by their number: a
per-sample (per-token) mean, never a mean of batch means. Metric names: ``study.metrics``.

Training loss under sample-mixing techniques (mixup, CutMix): ``lam * CE(y_a) + (1 - lam) *
CE(y_b)`` per sample, and ``train_acc`` is the same lam-weighted agreement with the two targets.
With label smoothing, ``train_loss`` is the smoothed objective; clean-train, validation and test
losses are plain cross-entropy under every technique, so gaps compare across techniques.
"""
from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import tasks
from .config import ConfigError, TrialConfig, make_config
from .regularization import Regularization, for_config
from .regularizers import MixedTargets
from .tasks import IGNORE, Task

# report(metrics, get_state): get_state() gives views of the live tensors, valid until report returns
ReportFn = Callable[[dict[str, Any], Callable[[], dict[str, Any]]], None]

__all__ = ["IGNORE", "Diverged", "build_task", "evaluate", "pick_device", "run_trial", "seed_everything"]


class Diverged(ArithmeticError):
    """The training loss became NaN or infinite."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no GPU is visible; allowed here: auto, cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_task(cfg: TrialConfig, data: Any, device: torch.device,
               reg: Regularization | None = None) -> Task:
    """The task's model, batches and evaluation sets (``data`` None: loaded from the config)."""
    spec = tasks.get(cfg.task)
    task = spec.build(cfg, data if data is not None else spec.load(cfg), device, reg or for_config(cfg))
    if cfg.compile:
        task.model = torch.compile(task.model)
    return task


# --------------------------------------------------------------------------------- losses
def _sums(logits: torch.Tensor, targets: Any, **loss_options: Any
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss sum, correct count, counted positions) over positions whose target is not IGNORE.

    ``targets`` may be :class:`MixedTargets` (mixup/CutMix): the loss and the correct count are
    then lam-weighted over the two targets of each sample."""
    logits = logits.reshape(-1, logits.shape[-1]).float()
    if isinstance(targets, MixedTargets):
        la, ca, n = _sums(logits, targets.y_a, reduction_weights=targets.lam, **loss_options)
        lb, cb, _ = _sums(logits, targets.y_b, reduction_weights=1.0 - targets.lam, **loss_options)
        return la + lb, ca + cb, n
    weights = loss_options.pop("reduction_weights", None)
    targets = targets.reshape(-1)
    mask = targets != IGNORE
    hit = ((logits.argmax(-1) == targets) & mask)
    if weights is None:
        loss = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum", **loss_options)
        return loss, hit.sum(), mask.sum()
    per = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="none", **loss_options)
    return (per * weights).sum(), (hit * weights).sum(), mask.sum()


def evaluate(task: Task, batches: Iterable, device: torch.device, amp: bool) -> tuple[float, float]:
    """(mean loss, accuracy) over every counted position, in eval mode, plain cross-entropy."""
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


# ------------------------------------------------------------------------------ optimizer
def _decoupled_decay(opt: torch.optim.Optimizer, *_: Any) -> None:
    """Before each SGD step: ``w <- w - lr * wd * w`` for groups with weight decay (AdamW's
    decoupled rule; torch's SGD ``weight_decay`` would add wd * w to the gradient instead)."""
    with torch.no_grad():
        for group in opt.param_groups:
            wd = group.get("decoupled_weight_decay", 0.0)
            if wd:
                for p in group["params"]:
                    p.mul_(1.0 - group["lr"] * wd)


def build_optimizer(cfg: TrialConfig, model: nn.Module, reg: Regularization) -> torch.optim.Optimizer:
    groups = reg.param_groups(model)
    decays = any(g.get("weight_decay", 0.0) for g in groups)
    if cfg.optimizer == "sgd":
        if not decays:
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
        groups = [{"params": g["params"], "decoupled_weight_decay": g.get("weight_decay", 0.0)} for g in groups]
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
        opt.register_step_pre_hook(_decoupled_decay)
        return opt
    if decays:
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.Adam(groups, lr=cfg.lr)


def _scheduler(cfg: TrialConfig, opt: torch.optim.Optimizer):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)


# ---------------------------------------------------------------------------- the trial
@dataclass
class _Trial:
    """Everything one trial trains with; its state is what a checkpoint holds."""
    cfg: TrialConfig
    device: torch.device
    use_amp: bool
    task: Task
    reg: Regularization
    opt: torch.optim.Optimizer
    sched: Any
    gen: torch.Generator  # the data order
    # augmentation and mixing draws: a stream of their own, so that a seed's data order is the
    # same under every technique (a checkpoint from before it existed: the order stream, as then)
    aug_gen: torch.Generator
    covered: list[torch.Tensor]  # the parameters penalties cover
    epoch: int = 0

    def state(self) -> dict[str, Any]:
        """The trial's state, holding views of the live tensors (no copy): valid until training
        goes on, so save it at once (study.trainable does, before the next epoch starts): torch.save
        serializes the tensors before it returns, so a deep copy only held a second copy of the
        model and optimizer in memory (benchmarks/checkpoint.py)."""
        return {
            "epoch": self.epoch, "model": _plain_model(self.task.model).state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "aug_generator": None if self.aug_gen is self.gen else self.aug_gen.get_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "config": self.cfg.to_dict(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        _plain_model(self.task.model).load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.gen.set_state(state["generator"])
        if state.get("aug_generator") is not None:
            self.aug_gen.set_state(state["aug_generator"])
        else:  # (written when one stream drew both: continue it so)
            self.aug_gen = self.gen
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.epoch = int(state["epoch"])


def _plain_model(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # a compiled model's state dict is the original's


def augmentation_seed(seed: int) -> int:
    """The seed of a trial's augmentation stream: derived from its seed, apart from the order's."""
    return (seed + 0x9E3779B97F4A7C15) % 2**63


def _setup(cfg: TrialConfig, data: Any, device: torch.device | str | None) -> _Trial:
    device = torch.device(device) if device is not None else pick_device(cfg.device)
    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    reg = for_config(cfg)
    task = build_task(cfg, data, device, reg)
    opt = build_optimizer(cfg, task.model, reg)
    return _Trial(cfg=cfg, device=device, use_amp=cfg.amp and device.type == "cuda", task=task, reg=reg,
                  opt=opt, sched=_scheduler(cfg, opt), gen=torch.Generator().manual_seed(cfg.seed),
                  aug_gen=torch.Generator().manual_seed(augmentation_seed(cfg.seed)),
                  covered=reg.covered_parameters(_plain_model(task.model)))


def _train_epoch(t: _Trial) -> dict[str, Any]:
    """One pass over the training batches; the as-trained metrics and the penalty terms."""
    model, device = t.task.model, t.device
    model.train()
    lr_now = t.opt.param_groups[0]["lr"]
    loss_options = t.reg.loss_options
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.long)
    terms: dict[str, Any] = {}
    for x, y in t.task.train_batches(t.gen, t.aug_gen):
        with _autocast(device, t.use_amp):
            l, c, n = _sums(t.task.forward(model, x), y, **loss_options)
        loss = l / n.clamp(min=1)
        penalties = t.reg.penalties(t.covered)
        for term in penalties.values():
            loss = loss + term
        t.opt.zero_grad(set_to_none=True)
        loss.backward()
        t.opt.step()
        loss_sum += l.detach()
        correct += c
        count += n
        terms = {name: term.detach() for name, term in penalties.items()}
    t.sched.step()
    n_seen = max(int(count.item()), 1)  # .item() also waits for the GPU, so timing is honest
    train_time = time.perf_counter() - t0
    out = {"train_loss": loss_sum.item() / n_seen, "train_acc": float(correct.item()) / n_seen,
           "learning_rate": lr_now, "_train_time": train_time,
           "samples_per_s": n_seen / train_time if train_time > 0 else math.nan}
    for name in _penalty_names(t.reg):
        out[f"{name}_term"] = float(terms[name]) if name in terms else 0.0
    return out


def _penalty_names(reg: Regularization) -> list[str]:
    return [tech.name for tech in reg.combination.techniques if tech.penalty is not None]


def _evaluate_epoch(t: _Trial, train: dict[str, Any], t0: float) -> dict[str, Any]:
    clean_loss, clean_acc = evaluate(t.task, t.task.eval_sets["train_clean"](), t.device, t.use_amp)
    val_loss, val_acc = evaluate(t.task, t.task.eval_sets["val"](), t.device, t.use_amp)
    m = {"epoch": t.epoch, "train_loss": train["train_loss"], "train_acc": train["train_acc"],
         "train_clean_loss": clean_loss, "train_clean_acc": clean_acc, "val_loss": val_loss, "val_acc": val_acc,
         "gap_loss": val_loss - clean_loss, "gap_acc": clean_acc - val_acc, "learning_rate": train["learning_rate"]}
    m.update({k: v for k, v in train.items() if k.endswith("_term")})
    m["epoch_time_s"] = time.perf_counter() - t0
    m["samples_per_s"] = train["samples_per_s"]
    return m


def _test(t: _Trial) -> dict[str, float]:
    """Every ``test*`` evaluation set: "test" -> test_loss/test_acc, "test_oov" -> test_loss_oov/..."""
    out = {}
    for name, batches in t.task.eval_sets.items():
        if name.startswith("test"):
            suffix = name[len("test"):]
            out[f"test_loss{suffix}"], out[f"test_acc{suffix}"] = evaluate(t.task, batches(), t.device, t.use_amp)
    return out


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
    config. ``get_state()`` gives views of the live tensors, valid until ``report`` returns: save
    it there (``torch.save``). ``resume`` is such a saved state of an earlier epoch: training continues
    after that epoch with the same model, optimizer and random streams, so an interrupted and
    resumed trial produces the same numbers as an uninterrupted one. Returns the last metrics.
    Raises :class:`Diverged` after reporting an epoch whose training loss was not finite.
    """
    if isinstance(cfg, dict):
        cfg = make_config(cfg)
    t = _setup(cfg, data, device)
    if resume is not None:
        t.restore(resume)
    metrics: dict[str, Any] = {}
    for epoch in range(t.epoch + 1, cfg.epochs + 1):
        t.epoch = epoch
        t0 = time.perf_counter()
        metrics = _evaluate_epoch(t, _train_epoch(t), t0)
        diverged = not math.isfinite(metrics["train_loss"]) or not math.isfinite(metrics["val_loss"])
        if epoch == cfg.epochs and not diverged:
            t1 = time.perf_counter()
            metrics.update(_test(t))
            metrics["test_time_s"] = time.perf_counter() - t1  # (trial work outside epoch_time_s)
        metrics["diverged"] = diverged
        if report is not None:
            report(metrics, t.state)
        if diverged:
            raise Diverged(f"training diverged at epoch {epoch}: train_loss={metrics['train_loss']}, "
                           f"val_loss={metrics['val_loss']} (lr={cfg.lr})")
    return metrics
