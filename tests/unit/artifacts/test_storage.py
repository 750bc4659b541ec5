"""Storage roots: a remote root (a real S3 server, moto, on 127.0.0.1) holds artifacts that nodes with their
own local mirrors publish and fetch; a reader never sees a partial artifact; credentials never go in a URI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.artifacts.storage import LOCAL_CACHE_ENV, RemoteRoot, absolute, check_root, is_remote, join, local_dir, refuse_credentials
from ccs_dist.artifacts.store import MANIFEST, ArtifactStore, atomic_save_npy, atomic_write_json


@pytest.fixture(scope="module")
def s3():
    from tests.support.s3 import s3_server

    with s3_server() as server:
        yield server


@pytest.fixture
def node(tmp_path, monkeypatch):
    """Switch this process to a node's own local mirror (``node("a")``, ``node("b")``)."""
    def use(name: str) -> Path:
        d = tmp_path / f"node-{name}"
        monkeypatch.setenv(LOCAL_CACHE_ENV, str(d))
        return d
    return use


def _write_artifact(store: ArtifactStore, key: str, n_files: int = 3) -> dict[str, bytes]:
    work = store.begin("decompose", key)
    content = {}
    for i in range(n_files):
        atomic_save_npy(work / f"heads-{i:05d}.npy", np.full((4, 3), i, dtype=np.float32))
        content[f"heads-{i:05d}.npy"] = (work / f"heads-{i:05d}.npy").read_bytes()
    return content


def test_local_roots_are_the_directory_itself(tmp_path):
    assert not is_remote(tmp_path) and not is_remote(f"file://{tmp_path}") and is_remote("s3://b/p") and is_remote("gs://b/p")
    assert local_dir(tmp_path / "c") == tmp_path / "c" and local_dir(f"file://{tmp_path}/c") == tmp_path / "c"
    assert join("s3://b/run?endpoint_override=h:1", "demo") == "s3://b/run/demo?endpoint_override=h:1"
    assert join(str(tmp_path), "demo") == str(tmp_path / "demo") and absolute("s3://b/x") == "s3://b/x"
    store = ArtifactStore(tmp_path / "cache")
    assert store.remote is None and store.root == tmp_path / "cache"


def test_remote_root_mirror_is_per_node(node):
    a = node("a")
    assert local_dir("s3://bucket/cache/x") == a / "s3" / "bucket" / "cache" / "x"


@pytest.mark.parametrize("uri", ["s3://AKIAEXAMPLE:wJalrXUtnFEMI@bucket/cache", "s3://AKIAEXAMPLE@bucket/cache",
                                 "s3://bucket/cache?secret_key=wJalrXUtnFEMI", "s3://bucket/cache?access_key=AKIAEXAMPLE",
                                 "gs://bucket/cache?session_token=wJalrXUtnFEMI"])
def test_credentials_in_a_uri_are_refused_without_repeating_them(uri):
    for check in (lambda: refuse_credentials("--cache-dir", uri), lambda: ArtifactStore(uri), lambda: check_root("--out", uri)):
        with pytest.raises(UserError) as e:
            check()
        text = str(e.value)
        assert "environment" in text and "\n" not in text
        assert "wJalrXUtnFEMI" not in text and "AKIAEXAMPLE" not in text


def test_an_endpoint_in_the_query_is_not_a_credential():
    refuse_credentials("--out", "s3://bucket/run?endpoint_override=127.0.0.1:9000&scheme=http")


def test_publish_then_fetch_on_another_node(s3, node):
    root = s3.uri("cache-a")
    node("a")
    writer = ArtifactStore(root)
    content = _write_artifact(writer, "k1")
    final = writer.commit("decompose", "k1", {"n": 3})
    assert (final / MANIFEST).is_file()
    assert s3.keys("cache-a/") == sorted([f"cache-a/decompose/k1/{n}" for n in content] + ["cache-a/decompose/k1/manifest.json"])
    b = node("b")
    reader = ArtifactStore(root)
    assert reader.root != writer.root and reader.exists("decompose", "k1")
    found = reader.find("decompose", "k1")
    assert found == b / "s3" / s3.bucket / "cache-a" / "decompose" / "k1"
    assert {p.name: p.read_bytes() for p in found.iterdir() if p.name != MANIFEST} == content
    assert json.loads((found / MANIFEST).read_text())["n"] == 3
    assert reader.find("decompose", "nothing") is None and not reader.exists("decompose", "nothing")


def test_manifest_is_published_last_and_a_crash_mid_publish_leaves_nothing_visible(s3, node, monkeypatch):
    root = s3.uri("cache-crash")
    node("a")
    writer = ArtifactStore(root)
    _write_artifact(writer, "k2", n_files=4)
    real_put, order = RemoteRoot.put, []

    def put_then_fail(self, local, rel):
        order.append(rel.rsplit("/", 1)[-1])
        if len(order) == 3:
            raise OSError("connection reset (injected)")
        real_put(self, local, rel)

    monkeypatch.setattr(RemoteRoot, "put", put_then_fail)
    with pytest.raises(OSError, match="injected"):
        writer.commit("decompose", "k2", {"n": 4})
    assert s3.keys("cache-crash/") and not any(k.endswith(MANIFEST) for k in s3.keys("cache-crash/"))
    node("b")
    assert ArtifactStore(root).find("decompose", "k2") is None  # objects without a manifest: not an artifact

    monkeypatch.setattr(RemoteRoot, "put", lambda self, local, rel: (order.append(rel.rsplit("/", 1)[-1]), real_put(self, local, rel)))
    order.clear()
    node("a")
    ArtifactStore(root).remote.publish_dir(writer.final_dir("decompose", "k2"), "decompose/k2", lambda n: n == MANIFEST)
    assert order[-1] == MANIFEST and len(order) == 5
    node("b")
    assert ArtifactStore(root).find("decompose", "k2") is not None


def test_a_failed_fetch_leaves_no_artifact_behind(s3, node, monkeypatch):
    root = s3.uri("cache-fetch")
    node("a")
    writer = ArtifactStore(root)
    _write_artifact(writer, "k3")
    writer.commit("decompose", "k3", {})
    node("b")
    reader = ArtifactStore(root)
    real_get, calls = RemoteRoot.get, []

    def get_then_fail(self, rel, local):
        calls.append(rel)
        if len(calls) == 2:
            raise OSError("timeout (injected)")
        real_get(self, rel, local)

    monkeypatch.setattr(RemoteRoot, "get", get_then_fail)
    with pytest.raises(OSError, match="injected"):
        reader.find("decompose", "k3")
    final = reader.final_dir("decompose", "k3")
    assert not final.exists() and not any(p.name.startswith(".k3") for p in final.parent.iterdir())
    monkeypatch.setattr(RemoteRoot, "get", real_get)
    assert (reader.find("decompose", "k3") / MANIFEST).is_file()


def test_shards_of_a_work_folder_travel_with_their_records(s3, node):
    from ccs_dist.decomposition.image_set import _is_shard_record

    root = s3.uri("cache-shards")
    node("a")
    helper = ArtifactStore(root)
    work = helper.begin("decompose", "k4")
    atomic_save_npy(work / "heads-00001.npy", np.ones(3, dtype=np.float32))
    atomic_write_json(work / "progress-00002.json", {"in": "flight"})  # another shard still running: stays here
    atomic_write_json(work / "shard-00001.json", {"index": 1})
    helper.publish_partial("decompose", "k4", _is_shard_record)
    assert s3.keys("cache-shards/") == ["cache-shards/decompose/k4.partial/heads-00001.npy",
                                        "cache-shards/decompose/k4.partial/shard-00001.json"]
    node("b")
    main = ArtifactStore(root)
    main.fetch_partial("decompose", "k4", _is_shard_record)
    mine = main.partial_dir("decompose", "k4")
    assert sorted(p.name for p in mine.iterdir()) == ["heads-00001.npy", "shard-00001.json"]
    main.commit("decompose", "k4", {})
    assert s3.keys("cache-shards/decompose/k4.partial/") == []  # merged: the published parts are cleared
    assert "cache-shards/decompose/k4/manifest.json" in s3.keys("cache-shards/")


def test_evaluation_shards_reach_the_merging_node_through_the_root_and_are_cleared(s3, node):
    from ccs_dist.stages.evaluate import ShardFolder

    root = s3.uri("cache-eval")
    node("a")
    rows = pl.DataFrame({"task": ["toy-shape"], "top1": [0.5]})
    ShardFolder(ArtifactStore(root), "e1").write(1, rows)
    assert s3.keys("cache-eval/") == ["cache-eval/evaluate-shards/e1.partial/shard-00001.parquet"]
    node("b")
    on_b = ShardFolder(ArtifactStore(root), "e1")
    assert on_b.read(0) is None and on_b.read(1).equals(rows)
    on_b.clear()
    assert s3.keys("cache-eval/evaluate-shards/e1.partial/") == [] and not on_b.store.partial_dir("evaluate-shards", "e1").exists()


def test_single_file_artifacts(s3, node):
    root = s3.uri("cache-files")
    node("a")
    store = ArtifactStore(root)
    assert store.find_file("text_embeddings", "e1", ".npy") is None
    atomic_save_npy(store.file_path("text_embeddings", "e1", ".npy"), np.arange(6, dtype=np.float32))
    store.publish_file("text_embeddings", "e1", ".npy")
    node("b")
    found = ArtifactStore(root).find_file("text_embeddings", "e1", ".npy")
    assert np.array_equal(np.load(found), np.arange(6, dtype=np.float32))


def test_stage_store_resumes_from_the_root_on_another_node(s3, node):
    from ccs_dist.jobs.resume import StageStore

    root = s3.uri("runs/demo")
    node("a")
    table = pl.DataFrame({"head": [1, 2], "value": [0.5, 0.25]})
    StageStore(root).save("m/x", "spans", "key1", {"spans": table}, {"seconds": 1.0})
    node("b")
    other = StageStore(root)
    assert other.load("m/x", "spans", "other-key") is None
    found = other.load("m/x", "spans", "key1")
    assert found is not None and found.tables["spans"].equals(table) and found.facts["seconds"] == 1.0
    other.save("m/x", "spans", "key2", {"spans": table.head(1)}, {})
    other.invalidate("m/x", "spans")
    assert not any(k.endswith(MANIFEST) for k in s3.keys("runs/demo/stages/"))
    node("c")
    assert StageStore(root).load("m/x", "spans", "key2") is None


def test_a_missing_bucket_and_an_unreachable_store_are_one_line_errors(s3, monkeypatch):
    with pytest.raises(UserError, match="does not exist") as e:
        check_root("--cache-dir", "s3://no-such-bucket/cache")
    assert "\n" not in str(e.value)
    check_root("--cache-dir", s3.uri("cache"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(UserError, match="does not answer") as e:
        check_root("--cache-dir", "s3://unreachable-bucket/cache")
    assert "\n" not in str(e.value) and s3.env["AWS_SECRET_ACCESS_KEY"] not in str(e.value)
    with pytest.raises(UserError, match="cannot open|does not know"):
        ArtifactStore("nosuchscheme://bucket/cache")


def test_an_fsspec_protocol_pyarrow_lacks_works_through_fsspec(node):
    pytest.importorskip("fsspec")
    root = "memory://ccs-storage-test/cache"
    check_root("--cache-dir", root)
    node("a")
    writer = ArtifactStore(root)
    content = _write_artifact(writer, "k5", n_files=2)
    writer.commit("decompose", "k5", {"n": 2})
    node("b")
    found = ArtifactStore(root).find("decompose", "k5")
    assert found is not None and {p.name: p.read_bytes() for p in found.iterdir() if p.name != MANIFEST} == content
