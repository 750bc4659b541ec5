"""A multi-node Ray cluster simulated on this machine: several raylets on 127.0.0.1, each declaring fake
GPUs (models still run on the CPU), for the multi-node test and ``bench/scale.py``.

Every node listens on loopback only, with its own temp dir and free ports (no clash with another Ray on
the machine), and the cluster authenticates by a fresh token that only the environment carries.

Start-up waits on events (each node registered with the GCS, then all of them live), each with a generous
deadline (:data:`NODE_UP_S`, :data:`CLUSTER_UP_S`) sized for a loaded 2-core machine; a miss raises
:class:`StartupTimeout` naming the step. Ray's own start-up windows are widened the same way
(:data:`RAY_PATIENCE`), for the node processes and for any driver started from this process's environment.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ray.cluster_utils import Cluster

from ccs_dist.distributed.executor import _loopback_only

NODE_UP_S = 240.0  # one node's processes started and registered with the GCS (a few seconds when idle)
CLUSTER_UP_S = 240.0  # every node seen live by the GCS, once each has registered
# Ray's start-up windows, widened for a busy machine; environment settings, so the node processes and the
# drivers started from here read them too.
RAY_PATIENCE = {
    "RAY_gcs_server_port_wait_time_s": "240",  # connecting to the GCS: ~1 s a try (default 20 tries)
    "RAY_worker_register_timeout_seconds": "240",  # a worker process registering with its raylet (default 60 s)
}


class StartupTimeout(TimeoutError):
    """A step of the cluster's start-up missed its deadline (the message names the step)."""


@dataclass
class SimulatedCluster:
    cluster: Cluster
    env: dict[str, str]  # what a driver process needs to join it (the auth token among it: never write it out)

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def workers(self) -> list:
        """The non-head nodes (the ones that may be removed)."""
        return list(self.cluster.worker_nodes)

    def remove(self, node) -> None:
        self.cluster.remove_node(node, allow_graceful=False)


@functools.cache
def _process_token() -> str:
    """One fresh token per process: Ray's token loader keeps the first it reads for the process's lifetime."""
    return secrets.token_hex(24)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports(head: bool) -> dict[str, int]:
    ports = {"metrics_export_port": _free_port(), "metrics_agent_port": _free_port(),
             "runtime_env_agent_port": _free_port(), "dashboard_agent_listen_port": _free_port()}
    if head:
        ports.update(gcs_server_port=_free_port(), ray_client_server_port=_free_port())
    return ports


@contextlib.contextmanager
def simulated_cluster(nodes: int = 2, gpus_per_node: float = 1, cpus_per_node: float = 1,
                      node_env: Sequence[Mapping[str, str]] = ()) -> Iterator[SimulatedCluster]:
    """``nodes`` Ray nodes on this machine (the first is the head); shut down and removed afterwards.
    ``node_env[i]``: environment variables of node i's processes only (e.g. its own CCS_DIST_LOCAL_CACHE)."""
    temp = tempfile.mkdtemp(prefix="ccsray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED", *RAY_PATIENCE,
                                            *(k for e in node_env for k in e))}
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": _process_token(), "RAY_USAGE_STATS_ENABLED": "0"}
    os.environ.update(auth)  # the node processes inherit it
    for k, v in RAY_PATIENCE.items():
        os.environ.setdefault(k, v)  # a caller's own setting wins
    from ray._raylet import Config

    Config.initialize("")  # this process reads the auth mode again (as Ray's own token set-up does)
    _loopback_only()
    cluster = None
    try:
        common = dict(node_ip_address="127.0.0.1", num_cpus=cpus_per_node, num_gpus=gpus_per_node, temp_dir=temp,
                      include_dashboard=False, object_store_memory=80 * 1024 * 1024)
        cluster = Cluster()  # no head yet: Cluster's own start-up waits a fixed 30 s
        for i in range(nodes):
            os.environ.update(node_env[i] if i < len(node_env) else {})  # a node's processes inherit the environment it starts in
            node = cluster.add_node(wait=False, **common, **_ports(head=i == 0))
            with _step(f"start-up: node {i} of {nodes} ({'head' if i == 0 else 'worker'}) registering with the GCS", NODE_UP_S):
                cluster._wait_for_node(node, timeout=NODE_UP_S)  # in order: the head first
        with _step(f"start-up: all {nodes} nodes live", CLUSTER_UP_S):
            cluster.wait_for_nodes(timeout=CLUSTER_UP_S)
        for k in {k for e in node_env for k in e}:  # the nodes have theirs; a driver started from here gets none
            if saved[k] is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = saved[k]
        # os.environ holds RAY_PATIENCE too
        env = {**os.environ, **auth, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_enable_metrics_collection": "0"}
        yield SimulatedCluster(cluster, env)
    finally:
        if cluster is not None:
            cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        Config.initialize("")
        shutil.rmtree(temp, ignore_errors=True)


@contextlib.contextmanager
def _step(step: str, deadline_s: float) -> Iterator[None]:
    """Around a Ray wait that raises TimeoutError after ``deadline_s``: a miss names ``step``."""
    t0 = time.monotonic()
    try:
        yield
    except TimeoutError as e:
        raise StartupTimeout(f"{step}: not done within {deadline_s:.0f} s (waited {time.monotonic() - t0:.0f} s): {e}") from e
