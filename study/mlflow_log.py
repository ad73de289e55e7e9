"""``study.run --mlflow URI``: each trial as an MLflow run (Ray Tune's MLflowLoggerCallback).

A run holds the trial's full settings as parameters, its per-epoch metrics with the epoch as the
step (the trial table's ``epoch``), tags ``experiment``, ``phase``, ``technique`` (the
regularizer), and at the end ``status``: the trial table's status (completed, stopped by ASHA,
diverged, errored). Runs go into the MLflow experiment named after the regstudy experiment.

A tracking URI with a password (``postgresql://user:PW@host/db``) is treated like
``--optuna-storage``'s: printed and pickled (Tune's saved state) with the password as ``***``; a
continued sweep takes it from this process's memory or ``$REGSTUDY_MLFLOW``.
"""
from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from .config import ConfigError, make_config
from .redact import Passwords, redact
from .sweep_progress import trial_status
from .trial_table import trial_params, upgrade_record

ENV = "REGSTUDY_MLFLOW"
INSTALL = "--mlflow needs MLflow: pip install -e '.[watch]' (or pip install mlflow-skinny)"
_URIS = Passwords(ENV)


def check(uri: str) -> None:
    """Fail fast (ConfigError) where MLflow is missing or the URI is no tracking URI."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL) from None
    if "://" not in uri and not uri.startswith(("file:", "databricks")):
        raise ConfigError(f"--mlflow {redact(uri)}: expected a tracking URI (sqlite:///PATH, "
                          "http://HOST:PORT, postgresql://..., file:///DIR)")
    _URIS.remember(uri)


def with_password(recorded: str) -> str:
    found = _URIS.find(recorded)
    if found is not None:
        return found
    raise ConfigError(f"the sweep logs to MLflow at {recorded}: set {ENV} to that URI with its password")


class TrialRuns(MLflowLoggerCallback):
    def __init__(self, uri: str, experiment: str, phase: str, fixed: dict[str, Any]):
        _URIS.remember(uri)
        super().__init__(tracking_uri=uri, experiment_name=experiment,
                         tags={"experiment": experiment, "phase": phase}, save_artifact=False)
        self.fixed = dict(fixed)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["tracking_uri"] = redact(state["tracking_uri"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.tracking_uri = with_password(self.tracking_uri)

    def _config(self, trial):
        return make_config(upgrade_record({**self.fixed, **trial_params(dict(trial.config or {}))}))

    def log_trial_start(self, trial) -> None:
        fresh = trial not in self._trial_runs
        super().log_trial_start(trial)
        if fresh:
            run_id = self._trial_runs[trial]
            cfg = self._config(trial)
            client = self.mlflow_util._get_client()
            client.set_tag(run_id, "technique", cfg.regularizer)
            client.set_tag(run_id, "trial_id", str(trial.trial_id))
            # the full settings (Tune logs only the searched ones): a run reads on its own
            self.mlflow_util.log_params(run_id=run_id, params_to_log={
                k: v for k, v in cfg.to_dict().items() if k not in (trial.config or {})})

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        # the epoch as the step (Tune's training_iteration counts reports, also those repeated
        # by a retry from a checkpoint); a repeated epoch's latest value wins, as in the table
        metrics = {k: v for k, v in result.items() if k not in ("config",)}
        self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics,
                                     step=int(result.get("epoch") or result.get("training_iteration") or 0))

    def log_trial_end(self, trial, failed: bool = False) -> None:
        run_id = self._trial_runs.get(trial)
        if run_id is not None:
            status = trial_status("ERROR" if failed else "TERMINATED", "errored" if failed else "done",
                                  trial.last_result or {}, int(self._config(trial).epochs))
            self.mlflow_util._get_client().set_tag(run_id, "status", status)
        super().log_trial_end(trial, failed)
