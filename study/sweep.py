"""The sweep: Ray Tune + OptunaSearch (TPE) + ASHA, and the multi-seed confirmation phase.

Layout of an experiment directory ``results/NAME/``::

    experiment.json          what was run (space, fixed settings, search settings, plan of the
                             confirmation, hardware, versions, times, budget per regularizer)
    optuna.db                the Optuna study (default storage; study name = NAME; a comparison
                             space: one per technique, NAME:<technique>; a grid space: none)
    ray/search/              Ray Tune experiment of the search (trial dirs ``trial_<id>``)
    ray/confirm/             Ray Tune experiment of the confirmation grid (a grid space's runs)
    statuses.json            Tune's final status per trial and phase (for the table)
    trials.parquet/.csv      the long trial table (study.trial_table), summary.csv
"""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
import torch
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from . import comparison, optuna_storage, results_location, tasks, trial_dirs, trial_table
from .config import make_config
from .experiment_dir import RECORD, experiment_dir, read_record
from .metrics import MODE, OBJECTIVE as METRIC
from .spaces import Space, define_by_run, grid_name
from .redact import redact
from .status_line import StatusLine, tune_output
from .trainable import train, train_confirm

PHASES = ("search", "confirm")


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
    table_refresh_s: float = 30.0
    keep_checkpoints: int | None = 2  # --keep-checkpoints: per trial, the newest (None: all)
    trials_per_technique: int | None = None  # a comparison space: search trials per technique
    # TPE's random start-up trials per study (None: study.comparison.startup_trials of the budget)
    tpe_startup_trials: int | None = None
    checkpoint_every: int = 1  # --checkpoint-every: epochs between checkpoints (and the last epoch)
    storage_uri: str | None = None  # --results-dir in a bucket: URI/NAME (exp_dir is then its local mirror)
    mlflow: str | None = None  # --mlflow: a tracking URI (study.mlflow_log)
    status_every_s: float = 30.0  # the live status line (study.status_line); 0: none
    verbose: bool = False  # Ray Tune's own progress tables

    @property
    def exp_dir(self) -> Path:
        return experiment_dir(self.results_dir, self.name)

    def ray_dir(self, phase: str | None = None) -> str:
        """Ray Tune's storage (``ray/``, or one phase's experiment in it): in the bucket when the
        results are there, else in the experiment directory."""
        parts = ("ray", phase) if phase else ("ray",)
        if self.storage_uri:
            return results_location.join(self.storage_uri, *parts)
        return str(self.exp_dir.joinpath(*parts))

    def startup_trials(self) -> int:
        """TPE's random start-up trials for each study: as recorded, else the rule for its budget."""
        if self.tpe_startup_trials is not None:
            return self.tpe_startup_trials
        return comparison.startup_trials(self.trials_per_technique or self.num_samples)

    @property
    def storage(self) -> str:
        return self.optuna_storage or optuna_storage.default_url(self.exp_dir)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles these settings with the TableCallback (tuner.pkl, the experiment state):
        # a storage's password must not go with them (the callback never opens the storage)
        state = dict(self.__dict__)
        if state["optuna_storage"]:
            state["optuna_storage"] = optuna_storage.recorded_form(state["optuna_storage"])
        if state.get("mlflow"):
            state["mlflow"] = redact(state["mlflow"])
        if state.get("storage_uri"):  # (a URI's query may hold keys; the driver's own settings win anyway)
            state["storage_uri"] = results_location.shown(state["storage_uri"])
        return state


def load_task_data(cfg) -> Any:
    """Decode/encode the dataset once in the driver; trials get it through the object store
    (``tune.with_parameters``: one copy per node, zero-copy for numpy arrays)."""
    return tasks.get(cfg.task).load(cfg)


def trial_dirname(trial) -> str:
    """Short trial directory names (``trial_<trial_id>``) instead of Tune's parameter soup."""
    return f"{trial_table.TRIAL_DIR_PREFIX}{trial.trial_id}"


# --- experiment.json and statuses.json --------------------------------------------------------

def read_experiment(exp_dir: Path) -> dict[str, Any]:
    return read_record(exp_dir) if (Path(exp_dir) / RECORD).exists() else {}


def update_experiment(s: SweepSettings, **fields: Any) -> dict[str, Any]:
    doc = read_experiment(s.exp_dir)
    doc.update(fields)
    trial_table.atomic_write_text(json.dumps(doc, indent=1, default=str), s.exp_dir / "experiment.json")
    return doc


def hardware() -> dict[str, Any]:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    res = ray.cluster_resources() if ray.is_initialized() else {}
    return {"cpu_count": os.cpu_count(), "gpus": gpus, "platform": platform.platform(),
            "cluster": {k: v for k, v in res.items() if k in ("CPU", "GPU", "memory")},
            "nodes": len([n for n in ray.nodes() if n.get("Alive")]) if ray.is_initialized() else 0}


def versions() -> dict[str, str]:
    return {"ray": ray.__version__, "optuna": optuna.__version__, "torch": torch.__version__,
            "pandas": pd.__version__}


def start_experiment(s: SweepSettings, space: Space, argv: list[str]) -> None:
    """Record what is about to run (a new experiment) or append this command (resume/confirm)."""
    doc = read_experiment(s.exp_dir)
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    commands = doc.get("commands", []) + [{"argv": argv, "time": now}]
    if not doc:
        cfg = make_config(space.fixed)
        runs = {"max_t": cfg.epochs, "trial_seed": cfg.seed, "max_concurrent": s.max_concurrent,
                "cpus_per_trial": s.cpus_per_trial, "gpus_per_trial": s.gpus_per_trial,
                "max_failures": s.max_failures, "keep_checkpoints": s.keep_checkpoints,
                "checkpoint_every": s.checkpoint_every}  # (how every kind of space runs its trials)
        doc = {
            "name": s.name, "space": space.name, "description": space.description,
            "command": argv, "start_time": now,
            "fixed": space.fixed, "searched": space.searched_names(),
            "space_definition": {"search": space.search, "sweep": space.sweep, "compare": space.compare,
                                 "grid": space.grid},
            "search": {"num_samples": s.num_samples, "sampler": "TPE", "seed": s.seed,
                       "tpe_startup_trials": s.startup_trials(),
                       "scheduler": "ASHA", "metric": METRIC, "mode": MODE, "grace_period": s.grace_period,
                       "reduction_factor": s.reduction_factor, **runs},
            "optuna_study": s.name,
            "optuna_storage": optuna_storage.record(s.optuna_storage),
            # seed k: the same initial weights and data order under every technique (the
            # analysis' design statement says so only for experiments that record it)
            "paired_seeds": True,
        }
        if space.kind == "compare":  # (one study and one ASHA per technique: study.comparison)
            doc["search"].update(trials_per_technique=s.trials_per_technique, techniques=list(space.compare),
                                 sampler="TPE per technique", scheduler="ASHA per technique")
            doc["optuna_study"] = None
            doc["optuna_studies"] = [comparison.study_name(s.name, t) for t in space.compare]
            doc["budget_per_regularizer"] = {t: s.trials_per_technique for t in space.compare}
        elif space.kind == "grid":
            doc["search"] = {"kind": "grid", "configurations": len(space.grid), **runs}
            doc["optuna_study"] = None
    else:
        doc["fixed"] = space.fixed  # the same settings; only the data location may have moved
        if isinstance(doc.get("search"), dict):  # (may change between runs: the latest is recorded)
            doc["search"]["checkpoint_every"] = s.checkpoint_every
            if space.kind != "grid":  # (an experiment recorded before the rule: the 10 it runs with)
                doc["search"].setdefault("tpe_startup_trials", s.startup_trials())
    doc.update(commands=commands, hardware=hardware(), versions=versions())
    s.exp_dir.mkdir(parents=True, exist_ok=True)
    trial_table.atomic_write_text(json.dumps(doc, indent=1, default=str), s.exp_dir / "experiment.json")
    if s.storage_uri:  # (at once: the bucket then knows the name is taken)
        results_location.push(s.exp_dir, s.storage_uri)


def _status_file(s: SweepSettings) -> Path:
    return s.exp_dir / "statuses.json"


def load_statuses(s: SweepSettings) -> dict[str, dict[str, str]]:
    path = _status_file(s)
    return json.loads(path.read_text()) if path.exists() else {}


def save_statuses(s: SweepSettings, phase: str, statuses: dict[str, str]) -> None:
    doc = load_statuses(s)
    doc[phase] = statuses
    trial_table.atomic_write_text(json.dumps(doc, indent=1), _status_file(s))


def result_statuses(results) -> dict[str, str]:
    """Tune's final status per trial id from a ResultGrid: "errored" or "done"."""
    out = {}
    for r in results:
        tid = (r.metrics or {}).get("trial_id") or (trial_table.trial_id_of(r.path) if r.path else None)
        out[str(tid)] = "errored" if r.error else "done"
    return out


# --- the trial table ----------------------------------------------------------------------------

def refresh_table(s: SweepSettings, live: dict[str, dict[str, str]] | None = None) -> pd.DataFrame:
    """Rebuild trials.parquet/.csv and summary.csv from every phase's trial directories.

    ``live``: statuses of a phase still running (from :class:`TableCallback`); a phase with a
    saved entry in statuses.json has finished.
    """
    t0 = time.perf_counter()
    meta = read_experiment(s.exp_dir)
    saved = load_statuses(s)
    frames, known = [], {}
    for phase in PHASES:
        running = live is not None and phase in live
        statuses = live[phase] if running else saved.get(phase)
        where = s.ray_dir(phase)
        frame = trial_table.collect(
            where, experiment=s.name, phase=phase, fixed=meta.get("fixed", {}),
            searched=meta.get("searched", []), statuses=statuses, finished=not running and phase in saved,
            reader=_READERS.setdefault(str(where), trial_dirs.TrialReader()))
        known[phase] = set(statuses) if statuses is not None else None
        if not frame.empty:
            frames.append(frame)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    table = trial_table.keep_lost_trials(table, trial_table.read_table(s.exp_dir), known)
    if not table.empty:
        trial_table.write_tables(table, s.exp_dir)
    if s.storage_uri:  # (the whole record in the bucket, at every refresh)
        results_location.push(s.exp_dir, s.storage_uri, study=s.optuna_storage is None)
    _LAST_REFRESH_S[str(s.exp_dir)] = time.perf_counter() - t0
    return table


# One reader per phase directory for the life of this driver: a refresh reads only the trials
# with new files (study.trial_dirs), and records how long it took (experiment.json
# table_refresh_s_last: the scale benchmark's figure).
_READERS: dict[str, trial_dirs.TrialReader] = {}
_LAST_REFRESH_S: dict[str, float] = {}


class Interrupted(Exception):
    """The driver was interrupted (SIGINT/SIGTERM) before the phase ended; Tune saved its state."""


_LAST_STEP: dict[str, dict[str, str]] = {}
# This driver's settings per phase. A restored Tuner unpickles the callback with the settings of
# the driver that created it (perhaps another --table-refresh-s, or a results dir given relative
# to another working directory): the table goes where this driver's settings say.
_DRIVER: dict[str, SweepSettings] = {}


def _tune_status(status: str) -> str:
    return {"TERMINATED": "done", "ERROR": "errored"}.get(status, "running")


class TableCallback(tune.Callback):
    """Keeps Tune's status per trial and rebuilds the trial table while the phase runs (at most
    every ``every_s`` seconds, and whenever a trial ends)."""

    def __init__(self, s: SweepSettings, phase: str):
        self.s, self.phase, self.last = s, phase, 0.0
        self.statuses: dict[str, str] = {}

    def on_step_end(self, iteration, trials, **info):
        # Tune's cleanup after an interrupt marks running trials TERMINATED: the statuses of the
        # last step are the truth. (A restored Tuner unpickles its own copy of this callback,
        # hence the module-level record.)
        _LAST_STEP[self.phase] = {str(t.trial_id): _tune_status(t.status) for t in trials}

    def _note(self, trials) -> None:
        for t in trials:
            self.statuses[str(t.trial_id)] = _tune_status(t.status)

    @property
    def settings(self) -> SweepSettings:
        return _DRIVER.get(self.phase, self.s)

    def _refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self.last < self.settings.table_refresh_s:
            return
        self.last = time.monotonic()
        try:
            refresh_table(self.settings, live={self.phase: dict(self.statuses)})
        except Exception as e:  # a refresh must never kill the sweep; the final write reports errors
            print(f"warning: trial table refresh failed: {e}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._note(trials)
        self._refresh()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._note(trials)
        self.statuses[str(trial.trial_id)] = "done"
        self._refresh(force=self.settings.table_refresh_s <= 0)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._note(trials)
        self.statuses[str(trial.trial_id)] = "errored"
        self._refresh(force=self.settings.table_refresh_s <= 0)


# --- the two phases -----------------------------------------------------------------------------

def make_trainable(fn, fixed: dict, data: Any, s: SweepSettings):
    fn = tune.with_parameters(fn, fixed=fixed, data=data, experiment=s.name,
                              checkpoint_every=s.checkpoint_every)
    return tune.with_resources(fn, {"cpu": s.cpus_per_trial, "gpu": s.gpus_per_trial})


def _run_config(s: SweepSettings, phase: str, fixed: dict, planned_trials: int) -> tune.RunConfig:
    # At most K checkpoints per trial: Tune deletes older ones as new ones land. It also forces
    # an experiment snapshot whenever a trial has checkpointed K times since the last one (so
    # that the snapshot never points at a deleted checkpoint): K=1 snapshots on every
    # checkpoint, K=2 on every second (README "Disk and checkpoints"; benchmarks/README.md). Tune
    # warns each time it happens within 5 s of the last (hundreds of lines in a long sweep): a
    # cost chosen and measured here, so the warning is off unless the user set its threshold.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return tune.RunConfig(name=phase, storage_path=s.ray_dir(),
                          failure_config=tune.FailureConfig(max_failures=s.max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=s.keep_checkpoints),
                          callbacks=_callbacks(s, phase, fixed, planned_trials),
                          verbose=2 if s.verbose else 0)


def _callbacks(s: SweepSettings, phase: str, fixed: dict, planned_trials: int) -> list[tune.Callback]:
    out = [TableCallback(s, phase), StatusLine(s.name, phase, fixed, planned_trials, every_s=s.status_every_s)]
    if s.mlflow:
        from .mlflow_log import TrialRuns
        out.append(TrialRuns(s.mlflow, s.name, phase, fixed))
    return out


class DurableOptunaSearch(OptunaSearch):
    """OptunaSearch whose study lives in a database that can be ahead of Tune's snapshot.

    When the driver is killed after a trial completed (recorded in the Optuna storage at once)
    but before Tune's next experiment snapshot, the restored experiment runs that trial again
    from its snapshotted checkpoint, and Optuna refuses reports for a finished trial, which
    would abort the whole resumed sweep. The storage's record stands; the repeats are dropped
    (OptunaSearch already does the same for the repeated completion)."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass


def run_search(s: SweepSettings, space: Space, data: Any, resume: bool) -> pd.DataFrame:
    fixed = space.fixed
    max_t = make_config(fixed).epochs
    trainable = make_trainable(train, fixed, data, s)
    path = s.ray_dir("search")
    if resume and tune.Tuner.can_restore(path):
        # Finished trials stay finished; unfinished and errored ones continue from their last
        # checkpoint; the searcher (and the Optuna study in its storage) keeps its history.
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        # (a --resume of a driver killed before Tune's first snapshot also lands here: the
        # Optuna study is loaded from its storage, the abandoned trial dirs stay in the table)
        _record_tune_state(s, "search")
        searcher, scheduler = _search_algorithms(s, space, max_t)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=s.num_samples,
                                        max_concurrent_trials=s.max_concurrent, reuse_actors=True,
                                        trial_dirname_creator=trial_dirname),
            run_config=_run_config(s, "search", fixed, s.num_samples),
        )
    return _fit(tuner, s, "search", expected=s.num_samples)


def recorded_startup_trials(recorded_search: dict) -> int | None:
    """A continued experiment's TPE start-up trials (experiment.json ``search``); None for a new
    one, where the rule applies. One recorded before the rule ran with Optuna's default, 10."""
    return int(recorded_search.get("tpe_startup_trials", 10)) if recorded_search else None


def _search_algorithms(s: SweepSettings, space: Space, max_t: int):
    """(searcher, scheduler): TPE and ASHA over the space; for a comparison space one of each per
    technique (study.comparison), every study in the experiment's storage."""
    storage = optuna_storage.open_storage(s.storage)
    asha = functools.partial(comparison.asha, METRIC, MODE, max_t, s.grace_period, s.reduction_factor)

    def tpe(search: dict, study: str) -> DurableOptunaSearch:
        sampler = optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.startup_trials())
        return DurableOptunaSearch(space=functools.partial(define_by_run, search), metric=METRIC, mode=MODE,
                                   sampler=sampler, study_name=study, storage=storage)

    if space.kind != "compare":
        return tpe(space.search, s.name), asha()
    techniques = list(space.compare)
    searcher = comparison.TechniqueSearch(
        {t: tpe(space.technique_search(t), comparison.study_name(s.name, t)) for t in techniques},
        s.trials_per_technique, metric=METRIC, mode=MODE)
    return searcher, comparison.TechniqueASHA(techniques, asha)


def _fit(tuner: tune.Tuner, s: SweepSettings, phase: str, expected: int) -> pd.DataFrame:
    """Run the phase, record Tune's final status per trial, rebuild the table. An interrupted
    phase (Tune returns normally after SIGINT) is recorded as such and raises Interrupted."""
    _LAST_STEP.pop(phase, None)
    _DRIVER[phase] = s
    try:
        with tune_output(s.verbose):
            results = tuner.fit()
    except Exception:
        _record_stopped(s, phase)  # (a full disk, a bug: the table shows where the trials were)
        raise
    statuses = {**result_statuses(results), **_LAST_STEP.get(phase, {})}
    interrupted = len(statuses) < expected or any(v == "running" for v in statuses.values())
    if interrupted:
        statuses = {k: "interrupted" if v == "running" else v for k, v in statuses.items()}
    save_statuses(s, phase, statuses)
    table = refresh_table(s)
    if interrupted:
        unfinished = expected - sum(v in ("done", "errored") for v in statuses.values())
        raise Interrupted(f"{phase} phase interrupted with {unfinished} of {expected} trials unfinished")
    return table


def _record_stopped(s: SweepSettings, phase: str) -> None:
    """Record the statuses of the last step as those of a stopped phase, where that can still be
    written; on a full disk the last complete table stays as it was."""
    statuses = {k: "interrupted" if v == "running" else v for k, v in _LAST_STEP.get(phase, {}).items()}
    if not statuses:
        return
    try:
        save_statuses(s, phase, statuses)
        refresh_table(s)
    except Exception:  # noqa: BLE001 - the driver is failing already; its own error is the one to report
        pass


def _record_tune_state(s: SweepSettings, phase: str) -> None:
    """Where this phase's Ray Tune state is created: its pickles hold this path, so a moved
    experiment cannot be continued from them (study.experiment_dir.check_in_place)."""
    at = read_experiment(s.exp_dir).get("tune_state_at")
    here = results_location.shown(s.storage_uri) if s.storage_uri else str(s.exp_dir)
    extra = {}
    if s.storage_uri:  # (Tune's pickled searcher names the driver copy's optuna.db)
        extra[results_location.COPY_KEY] = str(s.exp_dir)
    update_experiment(s, tune_state_at={**(at if isinstance(at, dict) else {}), phase: here}, **extra)


def confirm_seeds(search_seed: int, n: int) -> list[int]:
    """Seeds of the confirmation runs: the n seeds after the search's, never the search's own
    (the winner was selected on it: re-using it would carry its lucky draw into the numbers)."""
    return [search_seed + i for i in range(1, n + 1)]


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def confirm_plan(table: pd.DataFrame, searched: list[str], top_k: int) -> list[dict[str, Any]]:
    """The top-k search trials per regularizer, with the parameters they were given."""
    best = trial_table.best_per_regularizer(table, k=top_k)
    plan = []
    for _, row in best.iterrows():
        params = {}
        for name in searched:
            if name == "regularizer":
                params[name] = row["regularizer"]
            elif name in row and not (isinstance(row[name], float) and math.isnan(row[name])):
                params[name] = _plain(row[name])
        plan.append({"trial_id": row["trial_id"], "regularizer": row["regularizer"], "params": params,
                     "best_val_loss": float(row["best_val_loss"]), "best_epoch": int(row["best_epoch"])})
    return plan


def grid_plan(space: Space) -> list[dict[str, Any]]:
    """A grid space's configurations, as a confirmation plan (regularizer named in each)."""
    plan = []
    for i, entry in enumerate(space.grid):
        params = {"regularizer": grid_name(space, i), **{k: _plain(v) for k, v in entry.items() if k != "regularizer"}}
        plan.append({"trial_id": f"grid-{i}", "regularizer": params["regularizer"], "params": params})
    return plan


def run_confirm(s: SweepSettings, space: Space, data: Any, seeds: int, top_k: int = 1) -> pd.DataFrame:
    """Re-run the top-k configuration per regularizer with fresh seeds, full budget, no early
    stopping: a Tuner over the grid (configuration x seed) in ``ray/confirm``, resumable. Every
    configuration gets the same seeds (the analysis pairs the runs by seed). A grid space's
    configurations run here in the same way, without a search."""
    path = s.ray_dir("confirm")
    trainable = make_trainable(train_confirm, space.fixed, data, s)
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        if space.kind == "grid":  # (fixed configurations: nothing to select)
            plan = grid_plan(space)
            how = {"source": "grid", "selected_by": "the space's grid (no search)"}
        else:
            table = refresh_table(s)
            meta = read_experiment(s.exp_dir)
            plan = confirm_plan(table, meta.get("searched", space.searched_names()), top_k) if not table.empty else []
            how = {"source": "search", "top_k": top_k, "selected_by": "best-epoch val_loss"}
        if not plan:
            raise RuntimeError("no finished search trial to confirm")
        seed_list = confirm_seeds(make_config(space.fixed).seed, seeds)
        _record_tune_state(s, "confirm")
        update_experiment(s, confirm={"seeds": seed_list, **how, "configs": plan})
        tuner = tune.Tuner(
            trainable,
            param_space={"params": tune.grid_search([p["params"] for p in plan]),
                         "seed": tune.grid_search(seed_list)},
            tune_config=tune.TuneConfig(max_concurrent_trials=s.max_concurrent, reuse_actors=True,
                                        trial_dirname_creator=trial_dirname),
            run_config=_run_config(s, "confirm", space.fixed, len(plan) * len(seed_list)),
        )
    meta = read_experiment(s.exp_dir).get("confirm", {})
    return _fit(tuner, s, "confirm", expected=len(meta.get("configs", [])) * len(meta.get("seeds", [])))


def budget_per_regularizer(table: pd.DataFrame) -> dict[str, int]:
    """Number of search trials per regularizer type (the tuning budget each type got)."""
    t = table[table["phase"] == "search"]
    return {str(k): int(v) for k, v in t.groupby("regularizer")["trial_id"].nunique().items()}


def disk_usage(location: Path | str) -> tuple[int, int]:
    """(bytes, files) under a directory or a bucket prefix: one listing, no file read."""
    fs, base = trial_dirs.filesystem(location)
    import pyarrow.fs as pafs
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    except FileNotFoundError:
        return 0, 0
    files = [i for i in infos if i.type == pafs.FileType.File]
    return sum(int(i.size or 0) for i in files), len(files)


def finish_experiment(s: SweepSettings, table: pd.DataFrame, t0: float) -> dict[str, Any]:
    doc = read_experiment(s.exp_dir)
    wall = doc.get("wall_time_s", 0.0) + (time.time() - t0)  # summed over resumed runs
    size, files = disk_usage(s.storage_uri or s.exp_dir)  # (with a bucket: what the bucket holds)
    doc = update_experiment(
        s, end_time=time.strftime("%Y-%m-%dT%H:%M:%S"), wall_time_s=round(wall, 1),
        disk={"bytes": size, "files": files, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
        table_refresh_s_last=(round(_LAST_REFRESH_S[str(s.exp_dir)], 4) if str(s.exp_dir) in _LAST_REFRESH_S
                              else None),
        # (a comparison recorded its plan at the start: trials_per_technique each, kept, so that
        # the analysis can check what ran against it)
        budget_per_regularizer=(doc.get("budget_per_regularizer") if (doc.get("search") or {}).get("trials_per_technique")
                                else budget_per_regularizer(table)),
        search_trials_per_regularizer=budget_per_regularizer(table),
        search_trials_by_status=trial_table.status_counts(table),
        settings=asdict(s) | {"results_dir": str(s.results_dir),
                              "storage_uri": results_location.shown(s.storage_uri) if s.storage_uri else None,
                              "optuna_storage": optuna_storage.record(s.optuna_storage),
                              "mlflow": redact(s.mlflow) if s.mlflow else None})
    if s.storage_uri:
        results_location.push(s.exp_dir, s.storage_uri, study=s.optuna_storage is None)
    return doc


# --- `study.sweep(space, **options)` ---------------------------------------------------------------

class _CallableModule(type(functools)):
    """This module, callable: ``study.sweep(space, **options)`` is the Python API's sweep
    (study.api.sweep). A function of that name in the package would be replaced by this module
    as soon as anything imports it (``from . import sweep``, Tune restoring its pickles)."""

    def __call__(self, space=None, **options):
        from .api import sweep
        return sweep(space, **options)


import sys as _sys  # noqa: E402

_sys.modules[__name__].__class__ = _CallableModule
