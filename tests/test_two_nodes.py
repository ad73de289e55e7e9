"""Trials of one sweep run on both nodes of a two-node cluster (two raylets on loopback)."""
from __future__ import annotations

import json

import pandas as pd
import ray
from ray.cluster_utils import Cluster

from study.run import main


def test_trials_run_on_both_nodes(tiny_zip, tmp_path, cache_dir):
    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        results = tmp_path / "results"
        rc = main(["--space", "none", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", "2",
                   "--set", "batch_size=16", "--num-samples", "4", "--max-concurrent", "2",
                   "--grace-period", "2", "--name", "two", "--results-dir", str(results)])
        assert rc == 0
        nodes = set()
        for f in (results / "two" / "ray" / "search").glob("*/result.json"):
            nodes |= {json.loads(l)["node_id"] for l in f.read_text().splitlines() if l.strip()}
        assert len(nodes) == 2
        assert pd.read_parquet(results / "two" / "trials.parquet").trial_id.nunique() == 4
    finally:
        ray.shutdown()
        cluster.shutdown()
