"""Starting or joining a Ray cluster, with the dashboard on loopback unless asked otherwise."""
from __future__ import annotations

import os
import socket

import ray


# Ray starts one idle Python worker per CPU with its raylet, for tasks. A sweep runs only Ray
# Tune's trial actors, which never take one: Tune gives them a runtime_env, so Ray starts each its
# own worker and the idle ones are killed unused. On a 2-core machine their start-up took ~0.5 s
# from the time to the first epoch (10.5 -> 10.0 s, 10 alternated runs; benchmarks/README.md).
LOCAL_CLUSTER_ENV = {"RAY_enable_worker_prestart": "0", "RAY_prestart_worker_first_driver": "0"}


class ClusterError(RuntimeError):
    """The cluster cannot be reached or lacks the resources a trial asks for."""


def connect(address: str | None, dashboard_host: str = "127.0.0.1", num_cpus: int | None = None,
            include_dashboard: bool = True) -> str | None:
    """Start a local cluster (default) or join ``address``; return the dashboard URL if any.

    The dashboard accepts job submissions, i.e. runs code: it listens on 127.0.0.1 unless the
    user names another host explicitly. Probe ``address`` with :func:`check_reachable` first:
    ray.init itself retries an unreachable one for minutes.
    """
    if ray.is_initialized():  # embedded use (tests, notebooks): keep the caller's cluster
        return None
    kwargs = dict(log_to_driver=False, configure_logging=False)
    try:
        if address:
            ctx = ray.init(address=address, **kwargs)
        else:
            # (read by the raylet this starts, then put back: later clusters of this process and
            # its subprocesses keep Ray's defaults; the user's own value wins)
            before = {key: os.environ.get(key) for key in LOCAL_CLUSTER_ENV}
            os.environ.update({k: v for k, v in LOCAL_CLUSTER_ENV.items() if before[k] is None})
            try:
                ctx = ray.init(num_cpus=num_cpus, include_dashboard=include_dashboard,
                               dashboard_host=dashboard_host, **kwargs)
            finally:
                for key, value in before.items():
                    if value is None:
                        os.environ.pop(key, None)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(f"cannot connect to the Ray cluster at {address or 'a new local cluster'}: "
                           f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast: ray.init retries an unreachable GCS for minutes before giving up."""
    if address == "auto":  # a cluster started on this machine; ray.init says at once if none
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--address {address}: expected HOST:PORT (the head's GCS address, "
                           "printed by `ray start --head`), ray://HOST:PORT or auto")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {e.strerror or e or 'timed out'}; "
                           "is `ray start --head` running there, and is the port open?") from None


def check_resources(cpus_per_trial: float, gpus_per_trial: float) -> None:
    res = ray.cluster_resources()
    if gpus_per_trial > res.get("GPU", 0):
        raise ClusterError(f"--gpus-per-trial {gpus_per_trial}: the cluster has {res.get('GPU', 0):g} GPU(s)")
    if cpus_per_trial > res.get("CPU", 0):
        raise ClusterError(f"--cpus-per-trial {cpus_per_trial}: the cluster has {res.get('CPU', 0):g} CPU(s)")
