"""A job whose --out and --cache-dir are on object storage (a real S3 server, moto, on 127.0.0.1): the same
tables as a run on local paths, a rerun from an empty local mirror reuses every stage from the bucket, and
no credential is written anywhere."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.support.jobs import assert_same_tables, job_env, run_full_grid

SPEC = """
run: small
models:
  - {arch: ccs-toy, pretrained: planted_v2}
probe: {images: "toy:128", batch_size: 64, shards: 2}
layers: 2
pool: toy
spans: {m: 3, rank: 16, method: exact}
llm: {backend: offline, offline_embedder: minilm}
evaluation:
  synthetic: true
  tasks: [toy-colour]
  conditions: [original, high, random]
  seeds: [0]
  batch_size: 32
  templates_per_class: 2
resources: {device: cpu, cpus_per_model: 1}
"""
TABLES = ("spans", "labels", "judgments", "ccs", "ccs_at_k", "evaluation")


@pytest.fixture(scope="module")
def s3():
    from tests.support.s3 import s3_server

    with s3_server() as server:
        yield server


def _tables(folder) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(folder / f"{t}.parquet") for t in TABLES}


def test_job_on_object_storage_matches_local_paths_and_resumes_from_the_bucket(tmp_path, s3):
    spec = tmp_path / "small.yaml"
    spec.write_text(SPEC)
    local = run_full_grid("--local", "--quiet", "--spec", str(spec), "--out", str(tmp_path / "reports"),
                          "--cache-dir", str(tmp_path / "cache"))
    assert local.returncode == 0, local.stderr[-3000:]

    remote_args = ("--local", "--quiet", "--spec", str(spec), "--out", s3.uri("reports"), "--cache-dir", s3.uri("cache"))
    first = run_full_grid(*remote_args, env=job_env(**s3.env, CCS_DIST_LOCAL_CACHE=str(tmp_path / "node-a")))
    assert first.returncode == 0, first.stderr[-3000:]
    keys = s3.keys()
    assert "reports/small/manifest.json" in keys and "reports/small/index.html" in keys
    assert {f"reports/small/tables/{t}.parquet" for t in TABLES} <= set(keys)
    assert any(k.startswith("cache/decompose/") and k.endswith("/manifest.json") for k in keys)
    assert not any(".partial/" in k for k in keys)  # the shards were merged and their parts cleared
    assert "reports/small/stages/ccs-toy_planted_v2/spans/manifest.json" in keys

    fetched = tmp_path / "fetched"  # what a reader gets from the bucket
    fetched.mkdir()
    for t in TABLES:
        s3.client().download_file(s3.bucket, f"reports/small/tables/{t}.parquet", str(fetched / f"{t}.parquet"))
    assert_same_tables(_tables(tmp_path / "reports" / "small" / "tables"), _tables(fetched))
    manifest = json.loads(s3.client().get_object(Bucket=s3.bucket, Key="reports/small/manifest.json")["Body"].read())
    assert manifest["run_dir"] == s3.uri("reports/small") and manifest["spec"]["cache_dir"] == s3.uri("cache")

    again = run_full_grid(*remote_args, env=job_env(**s3.env, CCS_DIST_LOCAL_CACHE=str(tmp_path / "node-b")))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("reused from") == 4 and " done in " not in again.stderr  # spans, score, evaluate, direct
    assert f"reused from {s3.uri('reports/small/stages')}" in again.stderr
    assert_same_tables(_tables(tmp_path / "reports" / "small" / "tables"),
                       _tables(tmp_path / "node-b" / "s3" / s3.bucket / "reports" / "small" / "tables"))

    secret = s3.env["AWS_SECRET_ACCESS_KEY"].encode()
    for key in s3.keys():
        assert secret not in s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read(), key
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    for proc in (first, again):
        assert secret.decode() not in proc.stdout + proc.stderr


def test_credentials_in_the_uri_are_refused_before_any_work(tmp_path):
    proc = run_full_grid("--local", "--quiet", "--out", "s3://AKIAEXAMPLE:wJalrXUtnFEMIsecret@bucket/reports",
                         "--cache-dir", str(tmp_path / "cache"))
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: out (--out): the URI carries credentials"), proc.stderr[-2000:]
    assert "wJalrXUtnFEMIsecret" not in proc.stdout + proc.stderr and not (tmp_path / "cache").exists()


def test_an_unknown_bucket_is_one_line_error(tmp_path, s3):
    proc = run_full_grid("--local", "--quiet", "--out", "s3://no-such-bucket/reports", "--cache-dir", str(tmp_path / "cache"),
                         env=job_env(**s3.env))
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0], proc.stderr[-2000:]
