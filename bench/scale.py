"""One model's probe set and evaluation split into shards over a simulated Ray cluster, against local mode.

A cluster of ``--nodes`` raylets on this machine (``tests.support.ray_cluster``), each declaring one
fake GPU (models run on the CPU); the demo's trained ccs-toy model alone, its ``toy:N`` probe set split into
``--shards`` shards, one worker per node (``resources.shard_workers``), a small evaluation of ``--tasks``
toy tasks split into one shard per task. The same spec runs in local mode (shards in turn, one process) and
on the cluster; every table is compared. Prints ``nodes``, ``shards``, ``nodes_used`` (nodes that
decomposed a shard), ``evaluation_shards``, ``evaluation_nodes_used``, ``identical_to_local`` and
``seconds`` (the cluster run's wall time; ``local_seconds`` beside it). On a 2-core machine the nodes share
the cores, so the times show the overhead of distribution, not a speed-up. Last printed line: JSON.

    python bench/scale.py [--nodes 2] [--shards 8] [--images 256]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


TOY_TASKS = ("toy-colour", "toy-shape", "toy-size", "toy-position", "toy-texture")


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
    from ccs_dist.jobs.pipeline import run_job
    from ccs_dist.core.log import setup_logging

    setup_logging()
    root = Path(tempfile.mkdtemp(prefix="ccs-scale-"))
    local = run_job(_spec(root / "local", root / "local-cache", args.nodes, args.shards, args.images, args.tasks), mode="local",
                    show_progress=False)
    import ray

    from tests.support.ray_cluster import simulated_cluster

    with simulated_cluster(nodes=args.nodes, gpus_per_node=1, cpus_per_node=1) as cluster:
        t0 = time.perf_counter()
        on_ray = run_job(_spec(root / "ray", root / "ray-cache", args.nodes, args.shards, args.images, args.tasks), mode="ray",
                         address=cluster.address, show_progress=False)
        seconds = time.perf_counter() - t0
        ray.shutdown()
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
