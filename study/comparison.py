"""A fair comparison of techniques: equal search budgets and ASHA decisions within a technique.

A space with ``compare:`` (study.spaces) is searched with

* :class:`TechniqueSearch`, a Ray Tune ``Searcher`` that holds one searcher per technique (an
  ``OptunaSearch`` with its own TPE sampler and its own Optuna study, all in the experiment's
  storage; :func:`startup_trials` of them random) and hands out trials round-robin over the techniques that have not had their
  ``trials_per_technique`` yet: every technique gets exactly that many trials, and the
  techniques' trials run interleaved, so the cluster never waits for one technique to finish;
* :class:`TechniqueASHA`, a ``TrialScheduler`` that holds one ``ASHAScheduler`` per technique and
  passes each trial's events to its technique's: a trial is compared at each rung only with
  trials of its own technique, never stopped because another technique's trials are ahead.

Both are thin dispatchers over Ray's and Optuna's own pieces (TPE and ASHA are not re-written).
Their state is plain attributes, pickled with Tune's experiment state, so ``--resume`` continues
with the same per-technique counts (Tune saves the searcher; like any Tune scheduler, the ASHA
rungs of a resumed experiment start empty, every technique's alike).
"""
from __future__ import annotations

import pickle
from collections import Counter
from typing import Any, Callable

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher

KEY = "regularizer"  # the trial config's key that names its technique


def study_name(experiment: str, technique: str) -> str:
    """The Optuna study of one technique of a comparison (all in the experiment's storage)."""
    return f"{experiment}:{technique}"


class _PickledState:
    """Save and restore as Tune's own ASHA and OptunaSearch do: the attributes, pickled."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class TechniqueSearch(_PickledState, Searcher):
    """One searcher per technique, exactly ``trials_per_technique`` trials each, round-robin.

    ``searchers``: technique -> a Searcher over that technique's space (its suggestions get
    ``regularizer: <technique>`` added). The order of the mapping is the order of the rounds."""

    def __init__(self, searchers: dict[str, Searcher], trials_per_technique: int, metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.by_technique = dict(searchers)  # (not `searcher`: Tune unwraps attributes of that name)
        self.trials_per_technique = int(trials_per_technique)
        self.technique_of: dict[str, str] = {}  # Tune trial id -> technique

    def counts(self) -> dict[str, int]:
        """Trials handed out so far, per technique."""
        given = Counter(self.technique_of.values())
        return {t: given[t] for t in self.by_technique}

    def next_technique(self) -> str | None:
        """The technique with the fewest trials so far (the first in order on a tie); None when
        every technique has had its budget."""
        counts = self.counts()
        open_ = [t for t in self.by_technique if counts[t] < self.trials_per_technique]
        return min(open_, key=lambda t: counts[t]) if open_ else None

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        technique = self.next_technique()
        if technique is None:
            return Searcher.FINISHED
        config = self.by_technique[technique].suggest(trial_id)
        if config is None or config == Searcher.FINISHED:  # (an Optuna searcher always has one)
            return config
        self.technique_of[trial_id] = technique
        return {KEY: technique, **config}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._of(trial_id).on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self._of(trial_id).on_trial_complete(trial_id, result=result, error=error)

    def _of(self, trial_id: str) -> Searcher:
        return self.by_technique[self.technique_of[trial_id]]


class TechniqueASHA(_PickledState, FIFOScheduler):
    """One ASHA per technique: each trial's results go to its technique's scheduler only.

    ``make``: builds one technique's scheduler (an ``ASHAScheduler`` with the sweep's settings).
    Trials are started in Tune's order (FIFO, as ASHA does)."""

    def __init__(self, techniques: list[str], make: Callable[[], TrialScheduler]):
        super().__init__()
        self.by_technique = {t: make() for t in techniques}
        self._metric = next(iter(self.by_technique.values())).metric

    def _of(self, trial) -> TrialScheduler:
        return self.by_technique[trial.config[KEY]]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        return all([s.set_search_properties(metric, mode, **spec) for s in self.by_technique.values()])

    def on_trial_add(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{t}: {s.debug_string()}" for t, s in self.by_technique.items())


def startup_trials(budget: int) -> int:
    """TPE's random start-up trials for a study of ``budget`` trials (a search space's, or one
    technique's in a comparison): half of them, at most Optuna's default 10. With the default, a
    budget of 8 trials would never leave random search, and one of 16 would guide only 6."""
    return max(1, min(10, int(budget) // 2))


def asha(metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: float) -> ASHAScheduler:
    """The sweep's ASHA (one for a search space; one per technique in a comparison)."""
    return ASHAScheduler(metric=metric, mode=mode, time_attr="training_iteration", max_t=max_t,
                         grace_period=min(grace_period, max_t), reduction_factor=reduction_factor)
