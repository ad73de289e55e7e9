"""Threads follow resources: a trial's torch threads equal its CPU share, derived from the cluster
and the concurrency when --cpus-per-trial is not given (study.resources)."""
from __future__ import annotations

import pandas as pd
import pytest

from study.resources import threads_for, trial_resources


@pytest.mark.parametrize("cpus, gpus, flags, want_cpus, want_at_once", [
    (2, 0, dict(max_concurrent=1), 2, 1),  # the case: one trial at a time gets both cores
    (2, 0, dict(max_concurrent=2), 1, 2),
    (2, 0, dict(), 1, 2),  # neither given: one trial per core (packing)
    (16, 0, dict(num_samples=4), 4, 4),  # fewer trials than cores: the cores are shared among them
    (2, 0, dict(max_concurrent=4), 0.5, 4),  # more trials than cores: fractional share, one thread
    (16, 1, dict(gpus_per_trial=1), 16, 1),  # a GPU node: the running trial gets every core
    (16, 1, dict(gpus_per_trial=0.25), 4, 4),
    (16, 2, dict(gpus_per_trial=1, max_concurrent=1), 16, 1),
    (16, 1, dict(gpus_per_trial=1 / 3), 5, 3),  # whole CPUs: 16/3 -> 5
    (16, 0, dict(cpus_per_trial=1.0, max_concurrent=1), 1, 1),  # given: as given
    (16, 0, dict(cpus_per_trial=3.0), 3, 5),
])
def test_rule(cpus, gpus, flags, want_cpus, want_at_once):
    kw = {"cpus_per_trial": None, "gpus_per_trial": 0.0, "max_concurrent": None, "num_samples": 8, **flags}
    r = trial_resources(cpus, gpus, **kw)
    assert (r.cpus, r.concurrency) == (want_cpus, want_at_once)
    assert r.derived == (flags.get("cpus_per_trial") is None)
    assert threads_for(r.cpus) == max(1, int(want_cpus))


def test_share_is_capped_by_the_largest_node():
    # two 8-core nodes, one trial at a time: a trial runs on one node
    assert trial_resources(16, 0, cpus_per_trial=None, gpus_per_trial=0, max_concurrent=1, num_samples=8,
                           node_cpus=8).cpus == 8


@pytest.fixture(scope="module")
def cluster4():
    """A local cluster declaring 4 CPUs and 1 GPU (on this 2-core, GPU-less machine: the shares
    are what is tested; the trials train on the CPU)."""
    import ray

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REGSTUDY_OFFLINE", "1")
        ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False)
        yield
        ray.shutdown()


@pytest.mark.parametrize("flags, trials, want_threads", [
    (["--gpus-per-trial", "0", "--max-concurrent", "1"], 1, 4),  # all 4 CPUs to the one running trial
    (["--gpus-per-trial", "0.5"], 2, 2),  # 2 trials fit on the GPU: 4 CPUs / 2
    (["--gpus-per-trial", "0", "--cpus-per-trial", "1", "--max-concurrent", "1"], 1, 1),  # as given
])
def test_trials_record_their_threads(cluster4, tiny_zip, tmp_path, cache_dir, capsys, flags, trials, want_threads):
    from study.run import main

    rc = main(["--space", "none", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", "1",
               "--set", "batch_size=16", "--num-samples", str(trials), "--name", "t",
               "--results-dir", str(tmp_path), *flags])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"resources per trial: {want_threads:g} CPU ({want_threads} torch threads)" in out
    table = pd.read_parquet(tmp_path / "t" / "trials.parquet")
    assert table.trial_id.nunique() == trials
    assert table.threads.tolist() == [want_threads] * len(table)
