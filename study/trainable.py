"""The Ray Tune function trainable: one trial, a checkpoint per epoch, resume from the last one."""
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


def _maybe_inject_fault(trial_dir: str, epoch: int) -> None:
    """Test hook: ``REGSTUDY_FAULT=raise_once@EPOCH`` raises once per trial after that epoch's
    checkpoint, so a retry must resume from it (a marker file remembers the first attempt)."""
    spec = os.environ.get("REGSTUDY_FAULT", "")
    if not spec.startswith("raise_once@") or epoch != int(spec.split("@", 1)[1]):
        return
    marker = Path(trial_dir) / ".fault_injected"
    if not marker.exists():
        marker.write_text("1")
        raise RuntimeError(f"injected fault after epoch {epoch}")


def train(params: dict[str, Any], fixed: dict[str, Any] | None = None, data: Any = None) -> None:
    """``params``: what Optuna (or the confirmation grid) chose; ``fixed``: the space's settings."""
    cfg = make_config({**(fixed or {}), **params})
    resume = None
    history: list[dict[str, Any]] = []
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            resume = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
            history = json.loads((Path(d) / HISTORY_FILE).read_text())["epochs"]
    trial_dir = tune.get_context().get_trial_dir()
    node_id = ray.get_runtime_context().get_node_id()  # which node ran each epoch (multi-node runs)

    def report(metrics: dict[str, Any], get_state) -> None:
        # Every checkpoint also carries all epochs' metrics so far: Tune can drop the result of a
        # report that is followed at once by a failure, while the checkpoint itself persists.
        history.append(dict(metrics))
        with tempfile.TemporaryDirectory() as d:
            torch.save(get_state(), Path(d) / STATE_FILE)
            (Path(d) / HISTORY_FILE).write_text(json.dumps({"params": params, "epochs": history}))
            tune.report({**metrics, "node_id": node_id}, checkpoint=tune.Checkpoint.from_directory(d))
        _maybe_inject_fault(trial_dir, metrics["epoch"])

    try:
        run_trial(cfg, report, data=data, resume=resume)
    except Diverged:
        return  # the diverged epoch is reported (diverged=True); the sweep goes on
