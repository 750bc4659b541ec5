"""One model's probe set and evaluation split into shards across two simulated nodes (fake GPUs, models on
the CPU): the tables equal local mode's, also when a node is removed while the shards run, and a straggling shard
does not hold the job (issue 13)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.jobs import assert_same_tables, read_tables, run_full_grid
from tests.support.paths import REPO
from tests.support.shard_spec import SHARDS, SPEC, TASKS

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def spec_and_local(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    spec = root / "shards.yaml"
    spec.write_text(SPEC)
    proc = run_full_grid("--local", "--spec", str(spec), "--quiet", "--out", str(root / "local"), "--cache-dir", str(root / "local-cache"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return spec, read_tables(root / "local" / "shards")


@pytest.fixture()
def cluster():
    from tests.support.ray_cluster import simulated_cluster

    with simulated_cluster(nodes=2, gpus_per_node=1, cpus_per_node=1) as c:
        yield c


def _job(spec: Path, cluster, out: Path, cache: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ccs_dist.jobs.full_grid", "--address", cluster.address, "--spec", str(spec),
                             "--quiet", "--out", str(out), "--cache-dir", str(cache)],
                            cwd=REPO, env={**cluster.env, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
                                 "CCS_DIST_SHARD_DELAY": "spans:2,evaluate:6", **env},  # shards outlast a helper's start-up
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


JOB_S = 900  # the whole job on the simulated cluster (a few minutes when idle)
FIRST_SHARD_S = 600  # the job's first shard record on disk: the cluster's workers up and a model loaded


def _finish(job: subprocess.Popen) -> str:
    try:
        stdout, stderr = job.communicate(timeout=JOB_S)
    except subprocess.TimeoutExpired:
        job.kill()
        stdout, stderr = job.communicate()
        pytest.fail(f"the job did not finish within {JOB_S} s: " + stdout[-2000:] + stderr[-4000:])
    assert job.returncode == 0, stdout[-2000:] + stderr[-4000:]
    return stderr


def _runs(out: Path, stage: str) -> list[dict]:
    return [r for r in json.loads((out / "shards" / "manifest.json").read_text())["shards"] if r["stage"] == stage]


def _shard_records(cache: Path) -> list[Path]:
    return list((cache / "decompose").glob("*.partial/shard-*.json"))


def test_shards_spread_over_two_nodes_give_the_local_tables(spec_and_local, cluster, tmp_path):
    spec, local = spec_and_local
    _finish(_job(spec, cluster, tmp_path / "out", tmp_path / "cache"))
    assert_same_tables(local, read_tables(tmp_path / "out" / "shards"))
    runs = _runs(tmp_path / "out", "spans")
    assert sorted(r["shard"] for r in runs) == list(range(SHARDS))
    assert len({r["node"] for r in runs}) == 2, runs  # both nodes decomposed shards of the one model
    evaluated = _runs(tmp_path / "out", "evaluate")
    assert sorted(r["shard"] for r in evaluated) == list(range(len(TASKS)))
    assert len({r["node"] for r in evaluated}) == 2, evaluated  # and both evaluated tasks of it


def test_a_node_removed_while_the_shards_run_still_gives_the_local_tables(spec_and_local, cluster, tmp_path):
    spec, local = spec_and_local
    cache = tmp_path / "cache"
    job = _job(spec, cluster, tmp_path / "out", cache)
    deadline = time.monotonic() + FIRST_SHARD_S
    while not _shard_records(cache):  # the event: the first shard record on disk
        if job.poll() is not None:
            pytest.fail(f"waiting for the first shard, to remove a node then: the job exited ({job.returncode}): "
                        + job.stderr.read()[-4000:])
        if time.monotonic() > deadline:
            job.kill()
            pytest.fail(f"waiting for the first shard, to remove a node then: none within {FIRST_SHARD_S} s: "
                        + job.communicate()[1][-4000:])
        time.sleep(0.05)
    done_at_removal = len(_shard_records(cache))
    assert 0 < done_at_removal < SHARDS, "the node was not removed while the shards ran"
    removed = cluster.workers[0]
    cluster.remove(removed)
    done_after_removal = len(_shard_records(cache))  # a shard may finish on the node while it is being stopped
    _finish(job)
    assert_same_tables(local, read_tables(tmp_path / "out" / "shards"))
    runs = _runs(tmp_path / "out", "spans")
    assert sorted({r["shard"] for r in runs}) == list(range(SHARDS))
    assert sorted(r["shard"] for r in _runs(tmp_path / "out", "evaluate")) == list(range(len(TASKS)))
    assert sum(r["node"] == removed.node_id for r in runs) <= done_after_removal  # the rest were done on the node left


def test_a_straggling_shard_gets_a_second_copy_and_does_not_hold_the_job(spec_and_local, cluster, tmp_path):
    spec, local = spec_and_local
    slow_s, marker = 300, tmp_path / "slow-shard-5"
    t0 = time.monotonic()
    stderr = _finish(_job(spec, cluster, tmp_path / "out", tmp_path / "cache",
                          CCS_DIST_SLOW_SHARD=f"5:{slow_s}:{marker}"))  # its first copy takes 300 s more
    wall = time.monotonic() - t0
    assert marker.is_file(), "the slow copy never ran"
    assert wall < slow_s, f"the job waited for the slow copy ({wall:.0f} s)"
    assert "a second copy starts" in stderr
    assert_same_tables(local, read_tables(tmp_path / "out" / "shards"))
    runs = _runs(tmp_path / "out", "spans")
    assert sorted(r["shard"] for r in runs) == list(range(SHARDS))  # one record per shard: the winner's
