"""The unit the analysis compares techniques within: one (task, dataset, model) group.

Numbers are comparable only between runs of the same model on the same data, so every summary
row, test, Table 1 block, figure and report section is per group. The original report's Table 1
was measured in one setting (AlexNet on Tiny ImageNet): its numbers belong to that group only.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

GROUP_KEYS = ["task", "dataset", "model"]
PAPER_GROUP = ("image", "tinyimagenet", "alexnet")  # the setting of the original report's Table 1

Key = tuple  # values of GROUP_KEYS, in that order (and possibly of the columns after them)


def shows_paper(key: Sequence) -> bool:
    """Whether the original report's Table 1 numbers apply to this group."""
    return tuple(str(k) for k in key[:len(GROUP_KEYS)]) == PAPER_GROUP


def title(key: Sequence) -> str:
    """"image / cifar10 / resnet18" (parts a hand-built table does not know, "?", left out)."""
    return " / ".join(str(k) for k in key[:len(GROUP_KEYS)] if str(k) != "?") or "?"


def slug(key: Sequence) -> str:
    """The group in a file name: "image_cifar10_resnet18" (``tv:resnet50`` -> ``tv-resnet50``)."""
    return "_".join(re.sub(r"[^A-Za-z0-9.-]+", "-", str(k)) for k in key[:len(GROUP_KEYS)])


def in_group(df: pd.DataFrame, key: Sequence, cols: Sequence[str] = GROUP_KEYS) -> np.ndarray:
    """Which rows of ``df`` have ``cols`` equal to ``key``, column by column (``cols`` may go on
    after the group's columns, e.g. to the regularizer; ``key`` may stop early)."""
    mask = np.ones(len(df), bool)
    for col, value in zip(cols, key):
        mask &= (df[col] == value).to_numpy()
    return mask


def rows_of(df: pd.DataFrame, key: Sequence, cols: Sequence[str] = GROUP_KEYS) -> pd.DataFrame:
    """The rows of ``df`` in ``key`` (see :func:`in_group`)."""
    return df[in_group(df, key, cols)]


def iter_groups(df: pd.DataFrame) -> Iterable[tuple[Key, pd.DataFrame]]:
    """(key, rows) per group, in sorted order."""
    for key, g in df.groupby(GROUP_KEYS, sort=True):
        yield tuple(key), g
