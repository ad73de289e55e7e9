"""The Ray Tune function trainables: one trial, a checkpoint per epoch, resume from the last one."""
from __future__ import annotations

import errno
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from . import ray_metrics
from .config import make_config
from .faults import maybe_fail
from .resources import threads_for
from .training import Diverged, run_trial
from .trial_table import table_trial_id, upgrade_record

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"


def train(params: dict[str, Any], fixed: dict[str, Any] | None = None, data: Any = None,
          experiment: str = "", checkpoint_every: int = 1) -> None:
    """Search trial. ``params``: what Optuna chose; ``fixed``: the space's fixed settings;
    ``experiment``: the experiment's name (a tag of the trial's Ray metrics);
    ``checkpoint_every``: epochs between checkpoints (the last epoch always has one)."""
    _run({**(fixed or {}), **params}, params, data, experiment, "search", checkpoint_every)


def train_confirm(config: dict[str, Any], fixed: dict[str, Any] | None = None, data: Any = None,
                  experiment: str = "", checkpoint_every: int = 1) -> None:
    """Confirmation trial: ``config = {"params": <the search trial's parameters>, "seed": S}``
    (a grid point), on the same fixed settings as the search."""
    params = {**config["params"], "seed": int(config["seed"])}
    _run({**(fixed or {}), **params}, params, data, experiment, "confirm", checkpoint_every)


def checkpoint_due(epoch: int, last_epoch: int, every: int) -> bool:
    """Whether an epoch writes a checkpoint: every ``every``-th epoch and the last one. A trial
    that fails in between resumes from the newest checkpoint and trains the epochs after it again
    (the table keeps each epoch's latest report: each epoch appears once)."""
    return epoch % max(1, every) == 0 or epoch >= last_epoch


def _run(values: dict[str, Any], params: dict[str, Any], data: Any, experiment: str, phase: str,
         checkpoint_every: int = 1) -> None:
    started_at = time.time()  # (reported with each epoch: where a trial's time outside its epochs goes)
    cfg = make_config(upgrade_record(values))  # (experiments recorded before the catalog)
    # Threads follow resources: Ray's OMP_NUM_THREADS only covers whole CPUs and only a fresh
    # process (a reused actor keeps the threads of its first trial)
    torch.set_num_threads(threads_for(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)))
    resume = None
    history: list[dict[str, Any]] = []
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            resume = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
            history = json.loads((Path(d) / HISTORY_FILE).read_text())["epochs"]
    restored_from = len(history)  # 0: a fresh start; else the epoch of the checkpoint resumed from
    trial_dir = tune.get_context().get_trial_dir()
    node_id = ray.get_runtime_context().get_node_id()  # which node ran each epoch (multi-node runs)
    tags = {"experiment": experiment, "phase": phase, "technique": cfg.regularizer,
            "trial": table_trial_id(phase, tune.get_context().get_trial_id())}

    def report(metrics: dict[str, Any], get_state) -> None:
        # Every checkpoint also carries all epochs' metrics so far and the resolved config: Tune
        # can drop the result of a report that is followed at once by a failure, while the
        # checkpoint itself persists (study.trial_table reads both).
        maybe_fail("before_report", trial_dir, metrics["epoch"])
        metrics["threads"] = torch.get_num_threads()
        due = checkpoint_due(metrics["epoch"], cfg.epochs, checkpoint_every) or metrics.get("diverged", False)
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            metrics["checkpoint_time_s"] = 0.0
            if due:
                maybe_fail("checkpoint_write", trial_dir, metrics["epoch"])
                t0 = time.perf_counter()
                torch.save(get_state(), Path(d) / STATE_FILE)
                metrics["checkpoint_time_s"] = time.perf_counter() - t0  # (the history file is small)
                (Path(d) / HISTORY_FILE).write_text(json.dumps(
                    {"params": params, "config": cfg.to_dict(), "epochs": history + [metrics]}))
                checkpoint = tune.Checkpoint.from_directory(d)
            history.append(dict(metrics))
            # Before the report: Tune takes reports one at a time (the next epoch trains only
            # once Tune asked for it), and the report a trial ends on (ASHA's stop, max_t) never
            # returns: Tune stops the trial's thread inside it.
            ray_metrics.trial_epoch(tags, metrics)
            tune.report({**metrics, "node_id": node_id, "restored_from_epoch": restored_from,
                         "trial_started_at": started_at, "reported_at": time.time()},
                        checkpoint=checkpoint)
        if due:
            maybe_fail("after_checkpoint", trial_dir, metrics["epoch"])

    try:
        run_trial(cfg, report, data=data, resume=resume)
    except Diverged:
        return  # the diverged epoch is reported (diverged=True); the sweep goes on
    except torch.OutOfMemoryError as e:
        # Tune retries the trial from its last checkpoint (--max-failures); the reason it records
        # (error.txt -> the table's `error` column) should say what to change.
        gpus = ray.get_runtime_context().get_assigned_resources().get("GPU", 0)
        raise TrialOutOfMemory(
            f"out of GPU memory (batch_size={cfg.batch_size}, model={cfg.model}, GPU share "
            f"{gpus:g}): lower batch_size or raise --gpus-per-trial; {str(e).splitlines()[0]}") from None
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise TrialDiskFull(f"no space left for checkpoints or results under {trial_dir} ({e.strerror}); "
                            "the epochs reported so far are kept") from None
    finally:  # (also when Tune stops the trial: tune.report raises SystemExit)
        ray_metrics.trial_ended(tags)


class TrialOutOfMemory(RuntimeError):
    """A trial ran out of GPU memory (several trials may share one GPU)."""


class TrialDiskFull(OSError):
    """A trial could not write its checkpoint or results: the disk (or quota) is full."""
