"""One model's probe set and evaluation split into shards over a simulated Ray cluster, against local mode.

A cluster of ``--nodes`` raylets on this machine (``tests.support.ray_cluster``), each declaring one
fake GPU (models run on the CPU); the demo's trained ccs-toy model alone, its ``toy:N`` probe set split into
``--shards`` shards, one worker per node (``resources.shard_workers``), a small evaluation of ``--tasks``
toy tasks split into one shard per task. The same spec runs in local mode (shards in turn, one process) and
on the cluster; every table is compared. Prints ``nodes``, ``shards``, ``nodes_used`` (nodes that
decomposed a shard), ``evaluation_shards``, ``evaluation_nodes_used``, ``identical_to_local`` and
``seconds`` (the cluster run's wall time; ``local_seconds`` beside it). On a 2-core machine the nodes share
the cores, so the times show the overhead of distribution, not a speed-up. Last printed line: JSON.

Each step has a generous deadline (:data:`DEADLINES_S`, sized for a loaded 2-core machine; the cluster's
start-up waits on each node's registration, :mod:`tests.support.ray_cluster`); a missed one ends the bench
with exit status 1 and a last JSON line naming the step (``{"timed_out": STEP, ...}``).

    python bench/scale.py [--nodes 2] [--shards 8] [--images 256]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


TOY_TASKS = ("toy-colour", "toy-shape", "toy-size", "toy-position", "toy-texture")
# Seconds each step may take; at load average ~10 on 2 cores the local run took 66-105 s, the cluster run 352-409 s.
DEADLINES_S = {"local run": 1200, "cluster start-up": 900, "cluster run": 1800, "cluster shut-down": 300}


class StepTimeout(Exception):
    def __init__(self, step: str):
        super().__init__(f"{step}: not done within {DEADLINES_S[step]} s")
        self.step = step


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Bound a step by its deadline: SIGALRM raises :class:`StepTimeout` in this (the main) thread, wherever it
    waits (a Ray wait returns to Python at least every few seconds), and the cluster is still shut down."""
    def expire(signum, frame):
        raise StepTimeout(name)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(DEADLINES_S[name])
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _spec(out: Path, cache: Path, nodes: int, shards: int, images: int, tasks: int):
    from ccs_dist.jobs.spec import load_spec

    return load_spec("demo", {
        "run": "scale", "out": str(out), "cache_dir": str(cache),
        "models": [{"arch": "ccs-toy", "pretrained": "planted_v2"}],
        "probe": {"images": f"toy:{images}", "batch_size": 16, "shards": shards},
        "evaluation": {"synthetic": True, "tasks": list(TOY_TASKS[:tasks]), "shards": tasks,
                       "conditions": ["original", "high", "random"],
                       "seeds": [0], "batch_size": 32, "templates_per_class": 2},
        "attribution": {"enabled": False},
        "resources": {"device": "cpu", "cpus_per_model": 1, "gpus_per_model": 1, "shard_workers": nodes},
    })


def _tables(run_dir: Path) -> dict:
    import polars as pl

    return {p.stem: pl.read_parquet(p) for p in sorted((run_dir / "tables").glob("*.parquet"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--tasks", type=int, default=4, choices=range(1, len(TOY_TASKS) + 1), help="toy tasks evaluated, one shard each")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray

    from ccs_dist.core.log import setup_logging
    from ccs_dist.jobs.pipeline import run_job
    from tests.support.ray_cluster import StartupTimeout, simulated_cluster

    setup_logging()
    root = Path(tempfile.mkdtemp(prefix="ccs-scale-"))
    t_start = time.perf_counter()
    try:
        with step("local run"):
            local = run_job(_spec(root / "local", root / "local-cache", args.nodes, args.shards, args.images, args.tasks),
                            mode="local", show_progress=False)
        up = contextlib.ExitStack()
        with step("cluster start-up"):  # a miss inside shuts down the nodes already started
            cluster = up.enter_context(simulated_cluster(nodes=args.nodes, gpus_per_node=1, cpus_per_node=1))
        up.callback(ray.shutdown)  # the driver leaves before the nodes go
        try:
            with step("cluster run"):
                t0 = time.perf_counter()
                on_ray = run_job(_spec(root / "ray", root / "ray-cache", args.nodes, args.shards, args.images, args.tasks),
                                 mode="ray", address=cluster.address, show_progress=False)
                seconds = time.perf_counter() - t0
        finally:
            with step("cluster shut-down"):
                up.close()
    except (StepTimeout, StartupTimeout) as e:
        step_name = e.step if isinstance(e, StepTimeout) else "cluster start-up"
        print(f"bench/scale.py: timed out: {e}", file=sys.stderr)
        print(json.dumps({"timed_out": step_name, "error": str(e), "seconds": round(time.perf_counter() - t_start, 2)}))
        sys.exit(1)
    a, b = _tables(local.run_dir), _tables(on_ray.run_dir)
    identical = set(a) == set(b) and all(a[n].columns == b[n].columns and a[n].equals(b[n]) for n in a)
    runs = json.loads((on_ray.run_dir / "manifest.json").read_text())["shards"]
    shard_runs = [r for r in runs if r["stage"] == "spans"]
    eval_runs = [r for r in runs if r["stage"] == "evaluate"]
    result = {"nodes": args.nodes, "shards": args.shards, "images": args.images,
              "nodes_used": len({r["node"] for r in shard_runs}), "shards_done": len(shard_runs),
              "evaluation_shards": len(eval_runs), "evaluation_nodes_used": len({r["node"] for r in eval_runs}),
              "identical_to_local": identical, "tables_compared": len(a), "seconds": round(seconds, 2),
              "local_seconds": round(local.wall_s, 2)}
    for k, v in result.items():
        print(f"{k:>21}: {v}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
