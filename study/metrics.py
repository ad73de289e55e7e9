"""The metric names every task reports, and what the search optimises: one definition, imported by
the training loop, the sweep, the trial table and the analysis.

Per epoch: ``train_loss``/``train_acc`` (as trained: the regularized objective's cross-entropy,
dropout and augmentation on), ``train_clean_loss``/``train_clean_acc`` (eval mode, plain
cross-entropy on a fixed sample of the training split), ``val_loss``/``val_acc``, ``gap_loss``
(val_loss - train_clean_loss), ``gap_acc`` (train_clean_acc - val_acc), ``learning_rate``, one
``<technique>_term`` per technique that adds a penalty (``l1_term``, ``l2_term``: the term's value,
not in train_loss), ``epoch_time_s``, ``samples_per_s``, ``threads`` (the trial's torch intra-op
threads in a sweep: a record of its resources, not a result; NaN where not recorded),
``checkpoint_time_s`` (seconds to write the epoch's checkpoint in a sweep; 0 for an epoch that
wrote none, ``--checkpoint-every``; NaN where not recorded); after the
last epoch ``test_loss``, ``test_acc`` (and ``test_loss_oov``, ``test_acc_oov`` for tagging) and
``test_time_s`` (seconds of that evaluation: trial work outside ``epoch_time_s``).
"""
from __future__ import annotations

OBJECTIVE, MODE = "val_loss", "min"  # what TPE and ASHA optimise, and what "best" means
EPOCH_METRICS = ("train_loss", "train_acc", "train_clean_loss", "train_clean_acc", "val_loss", "val_acc",
                 "gap_loss", "gap_acc")
TEST_METRICS = ("test_loss", "test_acc", "test_loss_oov", "test_acc_oov")
# How long and how fast, not what was learned: they differ between two runs of one seed
TIMINGS = ("epoch_time_s", "samples_per_s", "checkpoint_time_s", "test_time_s")
# A trial's status in the trial table (study.trial_table.collect): it ran its full budget
# ("completed"), ASHA stopped it early ("stopped": a finished trial), it failed after its retries
# ("errored"), its loss became NaN/inf ("diverged"), the driver was stopped before it ended
# ("interrupted"), or it is still training (or its driver died: "running").
STATUSES = ("completed", "stopped", "errored", "diverged", "interrupted", "running")
# Trials that cannot be a technique's result: they failed, their numbers are not finite, or they
# have not finished (an unfinished trial's numbers are those of a shorter budget).
NOT_RESULTS = ("errored", "diverged", "interrupted", "running")


def penalty_metrics() -> tuple[str, ...]:
    from .regularizers import catalog
    return tuple(f"{t.name}_term" for t in catalog() if t.penalty is not None)


def all_metrics() -> tuple[str, ...]:
    """Every per-epoch column of the trial table, in order."""
    return (EPOCH_METRICS + ("learning_rate",) + penalty_metrics() + ("epoch_time_s", "samples_per_s", "threads",
                                                                   "checkpoint_time_s")
            + TEST_METRICS + ("test_time_s", "diverged"))
