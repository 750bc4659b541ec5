"""A multi-node Ray cluster simulated on this machine: several raylets on 127.0.0.1, each declaring fake
GPUs (models still run on the CPU), for the multi-node test and ``bench/scale.py``.

Every node listens on loopback only, with its own temp dir and free ports (no clash with another Ray on
the machine), and the cluster authenticates by a fresh token that only the environment carries.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from ray.cluster_utils import Cluster

from ccs_dist.distributed.executor import _loopback_only


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
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED",
                                            *(k for e in node_env for k in e))}
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": _process_token(), "RAY_USAGE_STATS_ENABLED": "0"}
    os.environ.update(auth)  # the node processes inherit it
    from ray._raylet import Config

    Config.initialize("")  # this process reads the auth mode again (as Ray's own token set-up does)
    _loopback_only()
    cluster = None
    try:
        common = dict(node_ip_address="127.0.0.1", num_cpus=cpus_per_node, num_gpus=gpus_per_node, temp_dir=temp,
                      include_dashboard=False, object_store_memory=80 * 1024 * 1024)
        os.environ.update(node_env[0] if node_env else {})  # a node's processes inherit the environment it starts in
        cluster = Cluster(initialize_head=True, head_node_args={**common, **_ports(head=True)})
        for i in range(1, nodes):
            os.environ.update(node_env[i] if i < len(node_env) else {})
            cluster.add_node(**common, **_ports(head=False))
        cluster.wait_for_nodes()
        for k in {k for e in node_env for k in e}:  # the nodes have theirs; a driver started from here gets none
            if saved[k] is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = saved[k]
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
