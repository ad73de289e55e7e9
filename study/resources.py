"""Resources per trial: the CPUs (and so the torch threads) a trial gets.

The rule, when ``--cpus-per-trial`` is not given: the trials that run at once share the cluster's
CPUs equally. How many run at once is the smallest of

* ``--max-concurrent``, if given;
* the trials that fit on the GPUs (``GPUs // --gpus-per-trial``), if trials use GPUs;
* ``--num-samples`` (no share is kept for trials that will never run);
* the CPUs, if neither of the first two is given: on CPUs alone, independent one-thread trials
  side by side train faster in total than one trial on several intra-op threads (threads share
  one model's batches and synchronise at every operator), so the default still packs one trial
  per core once there are at least as many trials as cores.

A share of one CPU or more is rounded down to whole CPUs (a thread cannot use a fraction, and
fractional shares can leave a trial unplaced by rounding) and capped at the largest node's
CPUs (a trial runs on one node); below one CPU it stays fractional (``--max-concurrent`` above
the CPU count) and the trial runs one thread. A trial's torch intra-op threads equal its CPU
share, at least one (:func:`threads_for`): Ray sets ``OMP_NUM_THREADS`` from it too, but only
for whole CPUs and only if nothing set it before.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class TrialResources:
    cpus: float
    gpus: float
    concurrency: int  # trials that can run at once with these shares
    derived: bool  # cpus came from the rule (not from --cpus-per-trial)

    def describe(self, cluster_cpus: float, cluster_gpus: float) -> str:
        how = ("derived: the cluster's CPUs shared by the trials that run at once; --cpus-per-trial overrides"
               if self.derived else "--cpus-per-trial")
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        on = f"{cluster_cpus:g} CPUs" + (f", {cluster_gpus:g} GPUs" if cluster_gpus else "")
        return (f"resources per trial: {self.cpus:g} CPU ({threads_for(self.cpus)} torch threads){gpus}; "
                f"up to {self.concurrency} trial(s) at once on {on} ({how})")


def concurrency(cluster_cpus: float, cluster_gpus: float, *, max_concurrent: int | None, gpus_per_trial: float,
                num_samples: int) -> int:
    """How many trials the rule lets run at once (see the module's docstring)."""
    limits = [num_samples]
    if max_concurrent:
        limits.append(max_concurrent)
    if gpus_per_trial > 0:
        limits.append(max(1, math.floor(cluster_gpus / gpus_per_trial + 1e-9)))
    if not max_concurrent and gpus_per_trial <= 0:
        limits.append(max(1, math.floor(cluster_cpus)))
    return max(1, min(limits))


def trial_resources(cluster_cpus: float, cluster_gpus: float, *, cpus_per_trial: float | None,
                    gpus_per_trial: float, max_concurrent: int | None, num_samples: int,
                    node_cpus: float | None = None) -> TrialResources:
    """The CPUs and GPUs of one trial: ``cpus_per_trial`` as given, else the rule's share."""
    if cpus_per_trial is not None:
        at_once = max(1, math.floor(cluster_cpus / cpus_per_trial + 1e-9))
        if gpus_per_trial > 0:
            at_once = min(at_once, max(1, math.floor(cluster_gpus / gpus_per_trial + 1e-9)))
        at_once = min(at_once, max_concurrent or at_once, num_samples)
        return TrialResources(float(cpus_per_trial), gpus_per_trial, max(1, at_once), derived=False)
    n = concurrency(cluster_cpus, cluster_gpus, max_concurrent=max_concurrent, gpus_per_trial=gpus_per_trial,
                    num_samples=num_samples)
    share = cluster_cpus / n
    if share >= 1:
        share = float(math.floor(share + 1e-9))
        if node_cpus:
            share = min(share, float(max(1, math.floor(node_cpus))))
    return TrialResources(share, gpus_per_trial, n, derived=True)


def threads_for(cpus: float) -> int:
    """Torch intra-op threads for a CPU share: the whole CPUs of it, at least one."""
    return max(1, int(math.floor(cpus + 1e-9)))
