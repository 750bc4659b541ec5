"""Two simulated nodes that share nothing but an S3 bucket (moto on 127.0.0.1): each node has its own local
mirror, the shards one node decomposes reach the other through the bucket, and the tables equal local mode's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.paths import REPO
from tests.support.jobs import assert_same_tables, read_tables, run_full_grid
from tests.support.shard_spec import SHARDS, SPEC

ray = pytest.importorskip("ray")


def test_shards_on_two_nodes_meet_through_the_bucket(tmp_path):
    from tests.support.ray_cluster import simulated_cluster
    from tests.support.s3 import s3_server

    spec = tmp_path / "shards.yaml"
    spec.write_text(SPEC)
    local = run_full_grid("--local", "--spec", str(spec), "--quiet", "--out", str(tmp_path / "local"),
                          "--cache-dir", str(tmp_path / "local-cache"))
    assert local.returncode == 0, local.stderr[-4000:]
    mirrors = [tmp_path / "node-0", tmp_path / "node-1"]
    with s3_server() as s3, simulated_cluster(nodes=2, gpus_per_node=1, cpus_per_node=1,
                                              node_env=[{"CCS_DIST_LOCAL_CACHE": str(m)} for m in mirrors]) as cluster:
        env = {**cluster.env, **s3.env, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "CCS_DIST_SHARD_DELAY": "2",
               "CCS_DIST_LOCAL_CACHE": str(tmp_path / "driver")}
        proc = subprocess.run([sys.executable, "-m", "ccs_dist.jobs.full_grid", "--address", cluster.address, "--spec", str(spec),
                               "--quiet", "--out", s3.uri("reports"), "--cache-dir", s3.uri("cache")],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        assert "part(s) of decompose/" in proc.stderr and f"done elsewhere fetched from {s3.uri('cache')}" in proc.stderr
        keys = s3.keys()
        assert "reports/shards/manifest.json" in keys and not any(".partial/" in k for k in keys), keys
        artifacts = {k.split("/")[2] for k in keys if k.startswith("cache/decompose/") and k.count("/") == 3}
        assert len(artifacts) == 1, artifacts  # both nodes decomposed shards of one artifact (one key)
    run = tmp_path / "driver" / "s3" / s3.bucket / "reports" / "shards"
    assert_same_tables(read_tables(tmp_path / "local" / "shards"), read_tables(run))
    runs = [r for r in json.loads((run / "manifest.json").read_text())["shards"] if r["stage"] == "spans"]
    assert sorted(r["shard"] for r in runs) == list(range(SHARDS)) and len({r["node"] for r in runs}) == 2, runs
    # every node worked in its own mirror: shard files were decomposed on both, and nothing under the driver's
    decomposed = [sorted((m / "s3" / s3.bucket / "cache" / "decompose").rglob("*.npy")) for m in mirrors]
    assert all(decomposed), decomposed
    assert not (tmp_path / "driver" / "s3" / s3.bucket / "cache" / "decompose").exists()
