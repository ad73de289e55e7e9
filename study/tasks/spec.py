"""What a task and a model declare: the types shared by the task table, the models and the loop.

Targets use ``IGNORE`` (-100) for positions that must not count (padding, masked tokens): every
loss is a sum over counted positions divided by their number, a per-sample (per-token) mean.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import nn

IGNORE = -100
Batch = tuple[Any, Any]


@dataclass
class Task:
    """A built task, ready to train: what the generic loop in ``study.training`` needs."""
    model: nn.Module
    # Training batches for one epoch: ``train_batches(gen, aug_gen=None)``, the order drawn from
    # ``gen``, the regularizer's batch transforms (augmentation, mixing) from ``aug_gen`` (``gen``
    # when None). Two streams keep the data order of a seed the same under every technique.
    train_batches: Callable[..., Iterator[Batch]]
    # Named evaluation sets; "train_clean" and "val" every epoch, "test*" after the last one.
    eval_sets: dict[str, Callable[[], Iterable[Batch]]]
    forward: Callable[[nn.Module, Any], Any]


@dataclass(frozen=True)
class ModelSpec:
    """A model of a task: ``build(cfg, n_outputs, hooks)``; ``accepts``: the regularizer hook keys
    (see ``study.regularizers.technique``) it knows where to apply; ``input_sizes``: the smallest
    and largest ``image_size`` its layers accept (None: not an image model, or see ``fits``);
    ``pretrained``: it can start from the weights named by the ``pretrained`` setting; ``fits``:
    ``fits(image_size)`` says why a side does not fit the model (None: it does)."""
    build: Callable[..., nn.Module]
    accepts: frozenset[str] = frozenset()
    input_sizes: tuple[int, float] | None = None
    pretrained: bool = False
    fits: Callable[[int], str | None] | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One row of the task table.

    ``load(cfg)`` reads the task's data once (the sweep's driver does it and hands the result to
    every trial); ``build(cfg, data, device, regularization)`` returns a :class:`Task`;
    ``defaults``: settings whose default differs for this task; ``unit``: what samples_per_s counts;
    ``dataset_key``: the setting that names the task's data (the trial table's ``dataset`` column).
    """
    name: str
    models: Mapping[str, ModelSpec]
    load: Callable[[Any], Any]
    build: Callable[..., Task]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    unit: str = "samples"
    dataset_key: str = "dataset"


TASKS: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    if spec.name in TASKS:
        raise ValueError(f"task {spec.name!r} registered twice")
    TASKS[spec.name] = spec
    return spec
