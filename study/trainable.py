"""The Ray Tune function trainables: one trial, a checkpoint per epoch, resume from the last one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from .config import make_config
from .training import Diverged, run_trial

STATE_FILE = "state.pt"
HISTORY_FILE = "history.json"
FAULT_ENV = "REGSTUDY_FAULT"


def _maybe_inject_fault(trial_dir: str, epoch: int) -> None:
    """Test hook: ``REGSTUDY_FAULT=raise_once@EPOCH`` raises once per trial right after that
    epoch's checkpoint, so the retry must resume from it (a marker file in the trial directory
    remembers the first attempt). Unset or empty: no fault."""
    spec = os.environ.get(FAULT_ENV, "")
    if not spec.startswith("raise_once@") or epoch != int(spec.split("@", 1)[1]):
        return
    marker = Path(trial_dir) / ".fault_injected"
    if not marker.exists():
        marker.write_text("1")
        raise RuntimeError(f"injected fault after epoch {epoch} ({FAULT_ENV}={spec})")


def train(params: dict[str, Any], fixed: dict[str, Any] | None = None, data: Any = None) -> None:
    """Search trial. ``params``: what Optuna chose; ``fixed``: the space's fixed settings."""
    _run({**(fixed or {}), **params}, params, data)


def train_confirm(config: dict[str, Any], fixed: dict[str, Any] | None = None, data: Any = None) -> None:
    """Confirmation trial: ``config = {"params": <the search trial's parameters>, "seed": S}``
    (a grid point), on the same fixed settings as the search."""
    params = {**config["params"], "seed": int(config["seed"])}
    _run({**(fixed or {}), **params}, params, data)


def _run(values: dict[str, Any], params: dict[str, Any], data: Any) -> None:
    cfg = make_config(values)
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

    def report(metrics: dict[str, Any], get_state) -> None:
        # Every checkpoint also carries all epochs' metrics so far and the resolved config: Tune
        # can drop the result of a report that is followed at once by a failure, while the
        # checkpoint itself persists (study.trial_table reads both).
        history.append(dict(metrics))
        with tempfile.TemporaryDirectory() as d:
            torch.save(get_state(), Path(d) / STATE_FILE)
            (Path(d) / HISTORY_FILE).write_text(json.dumps(
                {"params": params, "config": cfg.to_dict(), "epochs": history}))
            tune.report({**metrics, "node_id": node_id, "restored_from_epoch": restored_from},
                        checkpoint=tune.Checkpoint.from_directory(d))
        _maybe_inject_fault(trial_dir, metrics["epoch"])

    try:
        run_trial(cfg, report, data=data, resume=resume)
    except Diverged:
        return  # the diverged epoch is reported (diverged=True); the sweep goes on
