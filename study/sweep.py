"""The sweep: Ray Tune + OptunaSearch (TPE) + ASHA, and the multi-seed confirmation phase."""
from __future__ import annotations

import functools
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from . import trial_table
from .config import make_config
from .spaces import Space, define_by_run
from .trainable import train

METRIC, MODE = "val_loss", "min"


@dataclass
class SweepSettings:
    name: str
    results_dir: Path
    num_samples: int
    max_concurrent: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    grace_period: int = 1
    reduction_factor: float = 2
    seed: int = 0
    max_failures: int = 2
    optuna_storage: str | None = None

    @property
    def exp_dir(self) -> Path:
        return (self.results_dir / self.name).resolve()

    @property
    def storage(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.exp_dir / 'optuna.db'}"


def load_task_data(cfg) -> Any:
    """Decode/encode the dataset once in the driver; trials get it through the object store."""
    if cfg.task == "image":
        from .tinyimagenet import load_splits
        return load_splits(cfg)
    from .corpora import load_corpus
    return load_corpus(cfg)


class TableCallback(tune.Callback):
    """Rebuild the trial table while the sweep runs (at most every ``every_s`` seconds)."""

    def __init__(self, refresh, every_s: float = 30.0):
        self.refresh, self.every_s, self.last = refresh, every_s, 0.0

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if time.monotonic() - self.last > self.every_s:
            self.last = time.monotonic()
            try:
                self.refresh(None)
            except Exception as e:  # a refresh must never kill the sweep; the final write reports errors
                print(f"warning: trial table refresh failed: {e}")


def _trainable(fixed: dict, data_ref: Any, s: SweepSettings, confirm: bool = False):
    fn = train_confirm if confirm else train
    fn = tune.with_parameters(fn, fixed=fixed, data=data_ref)
    return tune.with_resources(fn, {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial})


def train_confirm(config: dict, fixed: dict | None = None, data: Any = None) -> None:
    train(config["full_config"], {}, data)


def _statuses(results) -> dict[str, str]:
    out = {}
    for r in results:
        tid = (r.metrics or {}).get("trial_id") or Path(r.path).name
        out[tid] = "errored" if r.error else "done"
    return out


def hardware() -> dict[str, Any]:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"cpu_count": os.cpu_count(), "gpus": gpus, "platform": platform.platform(),
            "cluster": {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU", "memory")}}


def _versions() -> dict[str, str]:
    return {"ray": ray.__version__, "optuna": optuna.__version__, "torch": torch.__version__,
            "pandas": pd.__version__}


def write_experiment_json(s: SweepSettings, space: Space, argv: list[str], extra: dict) -> None:
    path = s.exp_dir / "experiment.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.update({
        "name": s.name, "space": space.name, "description": space.description, "command": argv,
        "fixed": space.fixed, "searched": space.searched_names(),
        "search": {"num_samples": s.num_samples, "grace_period": s.grace_period,
                   "reduction_factor": s.reduction_factor, "max_t": make_config(space.fixed).epochs,
                   "seed": s.seed, "max_concurrent": s.max_concurrent, "cpus_per_trial": s.cpus_per_trial,
                   "gpus_per_trial": s.gpus_per_trial},
        "optuna_study": s.name, "optuna_storage": s.storage if not s.optuna_storage else "(user-given)",
        "hardware": hardware(), "versions": _versions(), **extra,
    })
    trial_table.atomic_write_text(json.dumps(doc, indent=1, default=str), path)


def refresh_table(s: SweepSettings, space: Space, statuses: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """Rebuild trials.parquet/.csv and summary.csv from every phase's trial directories."""
    frames = []
    for phase in ("search", "confirm"):
        d = s.exp_dir / "ray" / phase
        if d.is_dir():
            frames.append(trial_table.collect(d, experiment=s.name, phase=phase, fixed=space.fixed,
                                              searched=space.searched_names(),
                                              statuses=(statuses or {}).get(phase)))
    table = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(
        not f.empty for f in frames) else pd.DataFrame()
    if not table.empty:
        trial_table.write_tables(table, s.exp_dir)
    return table


def _status_file(s: SweepSettings) -> Path:
    return s.exp_dir / "statuses.json"


def _save_statuses(s: SweepSettings, phase: str, st: dict[str, str]) -> dict[str, dict[str, str]]:
    path = _status_file(s)
    all_st = json.loads(path.read_text()) if path.exists() else {}
    all_st[phase] = st
    trial_table.atomic_write_text(json.dumps(all_st), path)
    return all_st


def _load_statuses(s: SweepSettings) -> dict[str, dict[str, str]]:
    path = _status_file(s)
    return json.loads(path.read_text()) if path.exists() else {}


def run_search(s: SweepSettings, space: Space, data: Any, resume: bool) -> pd.DataFrame:
    fixed = space.fixed
    max_t = make_config(fixed).epochs
    data_ref = ray.put(data)
    trainable = _trainable(fixed, data_ref, s)
    path = s.exp_dir / "ray" / "search"
    refresh = functools.partial(lambda st, s=s, space=space: refresh_table(s, space, _load_statuses(s)))
    if resume and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        searcher = OptunaSearch(
            space=functools.partial(define_by_run, space.search), metric=METRIC, mode=MODE,
            sampler=optuna.samplers.TPESampler(seed=s.seed),
            study_name=s.name, storage=optuna.storages.RDBStorage(s.storage))
        scheduler = ASHAScheduler(metric=METRIC, mode=MODE, time_attr="training_iteration", max_t=max_t,
                                  grace_period=min(s.grace_period, max_t), reduction_factor=s.reduction_factor)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=s.num_samples,
                                        max_concurrent_trials=s.max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(
                name="search", storage_path=str(s.exp_dir / "ray"),
                failure_config=tune.FailureConfig(max_failures=s.max_failures),
                callbacks=[TableCallback(refresh)], verbose=1),
        )
    results = tuner.fit()
    _save_statuses(s, "search", _statuses(results))
    return refresh_table(s, space, _load_statuses(s))


def run_confirm(s: SweepSettings, space: Space, data: Any, seeds: int, top_k: int = 1) -> pd.DataFrame:
    """Re-run the top-k configuration per regularizer with seeds 1..S, full budget, no early stop.

    Seed 0 is the search's seed; new seeds keep the winner's luck on its search seed (selection
    bias) out of the confirmed numbers.
    """
    table = refresh_table(s, space, _load_statuses(s))
    best = trial_table.best_per_regularizer(table, k=top_k)
    if best.empty:
        raise RuntimeError("no finished search trial to confirm")
    grid = []
    for _, row in best.iterrows():
        base = json.loads(row["config"])
        for seed in range(1, seeds + 1):
            grid.append({**base, "seed": seed, "class_list": base["class_list"]})
    path = s.exp_dir / "ray" / "confirm"
    data_ref = ray.put(data)
    trainable = _trainable({}, data_ref, s, confirm=True)
    if tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable, param_space={"full_config": tune.grid_search(grid)},
            tune_config=tune.TuneConfig(max_concurrent_trials=s.max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name="confirm", storage_path=str(s.exp_dir / "ray"),
                                      failure_config=tune.FailureConfig(max_failures=s.max_failures), verbose=1),
        )
    results = tuner.fit()
    _save_statuses(s, "confirm", _statuses(results))
    return refresh_table(s, space, _load_statuses(s))


def budget_per_regularizer(table: pd.DataFrame) -> dict[str, int]:
    t = table[table["phase"] == "search"]
    return {str(k): int(v) for k, v in t.groupby("regularizer")["trial_id"].nunique().items()}
