"""The POS-tagging task: the encoded corpus as tensors on the device, length-bucketed batches.

Inputs are ``(token ids (B, T) padded with 0, lengths (B,) on the CPU)``; targets are tag ids
(B, T) with ``IGNORE`` at padding, so padding counts in no loss and no metric. Training batches:
each epoch the sentences are shuffled, stably sorted by length (ties stay shuffled), cut into
batches of ``batch_size`` sentences, and the batch order shuffled, all from the trial's
generator; padding is therefore small. The regularizer's batch transforms (word dropout) act
on training batches only (same generator); evaluation never sees them.

Evaluation sets: ``train_clean`` (a fixed sample of training sentences, as many as the
validation split unless ``train_eval_size``), ``val``, ``test`` and ``test_oov`` (test with every
in-vocabulary token set to IGNORE, so the loop reports ``test_acc_oov``: accuracy on words not
seen in training). Throughput ``samples_per_s`` is **tokens** per second: the generic loop counts
non-IGNORE targets. L2 is the generic loop's (``lambda * sum of squared weight matrices``:
embedding, RNN and output weights).
"""
from __future__ import annotations

import numpy as np
import torch

from typing import TYPE_CHECKING

from ..corpora import PAD, UNK, PosData, PosSplit, load_corpus
from ..taggers import MODELS
from .spec import IGNORE, Task, TaskSpec, register

if TYPE_CHECKING:
    from ..config import TrialConfig
    from ..regularization import Regularization


class _DeviceSplit:
    """A split's flat arrays on the device; ``batch(idx)`` gathers padded sentences."""

    def __init__(self, split: PosSplit, device: torch.device):
        self.device = device
        self.words = torch.from_numpy(np.ascontiguousarray(split.words, dtype=np.int64)).to(device)
        self.tags = torch.from_numpy(np.ascontiguousarray(split.tags, dtype=np.int64)).to(device)
        self.oov = torch.from_numpy(np.ascontiguousarray(split.oov, dtype=bool)).to(device)
        self.starts = torch.from_numpy(np.ascontiguousarray(split.offsets[:-1], dtype=np.int64)).to(device)
        self.lengths = torch.from_numpy(np.ascontiguousarray(split.lengths, dtype=np.int64))  # CPU
        self.n = split.n_sentences

    def batch(self, idx: torch.Tensor, oov_only: bool = False):
        """Sentences ``idx`` (CPU int64) -> ((ids, lengths), targets)."""
        lengths = self.lengths[idx]
        width = int(lengths.max())
        lens_dev = lengths.to(self.device)
        steps = torch.arange(width, device=self.device)
        real = steps[None, :] < lens_dev[:, None]
        pos = torch.where(real, self.starts[idx.to(self.device)][:, None] + steps[None, :], 0)
        ids = self.words[pos].masked_fill_(~real, PAD)
        keep = real & self.oov[pos] if oov_only else real
        y = self.tags[pos].masked_fill_(~keep, IGNORE)
        return (ids, lengths), y


def by_length(lengths: torch.Tensor, size: int, order: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Sentence indices sorted by length (stable, starting from ``order``) in chunks of ``size``."""
    order = torch.arange(len(lengths)) if order is None else order
    order = order[torch.argsort(lengths[order], stable=True)]
    return list(order.split(size))


def clean_sample(n_train: int, size: int, seed: int) -> np.ndarray:
    """Fixed training sentences evaluated in eval mode every epoch."""
    rng = np.random.default_rng(seed + 1_000_003)
    return np.sort(rng.choice(n_train, size=min(size, n_train), replace=False))


def build(cfg: TrialConfig, data: PosData, device: torch.device, reg: Regularization) -> Task:
    model = MODELS[cfg.model].build(cfg, (len(data.vocab), len(data.tags)), reg.model_hooks).to(device)
    transforms = reg.transforms_batches
    ctx = {"pad": PAD, "unk": UNK}
    train = _DeviceSplit(data.train, device)
    val = _DeviceSplit(data.val, device)
    test = _DeviceSplit(data.test, device)
    clean_idx = torch.from_numpy(clean_sample(train.n, cfg.train_eval_size or val.n, cfg.split_seed))

    def forward(m: torch.nn.Module, x):
        ids, lengths = x
        return m(ids, lengths)

    def train_batches(gen: torch.Generator, aug_gen: torch.Generator | None = None):
        perm = torch.randperm(train.n, generator=gen)
        chunks = by_length(train.lengths, cfg.batch_size, perm)
        for k in torch.randperm(len(chunks), generator=gen).tolist():
            x, y = train.batch(chunks[k])
            if transforms:
                x, y = reg.transform(x, y, gen if aug_gen is None else aug_gen, ctx)
            yield x, y

    def eval_set(split: _DeviceSplit, subset: torch.Tensor | None = None, oov_only: bool = False):
        if subset is None:
            chunks = by_length(split.lengths, cfg.eval_batch_size)
        else:
            chunks = [subset[c] for c in by_length(split.lengths[subset], cfg.eval_batch_size)]
        cache: list = []

        def batches():
            if not cache:  # gathered once, on first use (test sets only after the last epoch)
                cache.extend(split.batch(c, oov_only) for c in chunks)
            return iter(cache)
        return batches

    return Task(
        model=model,
        train_batches=train_batches,
        eval_sets={"train_clean": eval_set(train, clean_idx), "val": eval_set(val),
                   "test": eval_set(test), "test_oov": eval_set(test, oov_only=True)},
        forward=forward,
    )


# POS defaults: the vanilla RNN, and smaller batches/higher lr (treebank has ~3k training
# sentences; 128-sentence batches give too few steps per epoch).
register(TaskSpec(name="pos", models=MODELS, load=load_corpus, build=build, unit="tokens",
                  defaults={"model": "rnn", "batch_size": 32, "lr": 3e-3}, dataset_key="corpus"))
