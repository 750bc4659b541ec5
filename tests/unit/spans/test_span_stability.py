"""Span stability from bucketed moments: streamed in one read of a real on-disk artifact, 1.0 for a head with
clear directions, low for a head of isotropic noise; the ccs table of the score stage carries it."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from ccs_dist.decomposition.image_set import DecompositionArtifact
from ccs_dist.spans.stability import StabilityConfig, sum_moments
from ccs_dist.decomposition.moments import bucket_of_images
from ccs_dist.spans.table import SpanConfig, span_facts, spans_table
from ccs_dist.artifacts.store import atomic_save_npy
from ccs_dist.text.pool import DescriptionPool
from ccs_dist.decomposition.moments import HeadMoments
from ccs_dist.spans.textspan import stream_moments


def _write_artifact(path, heads_NLHE: np.ndarray, shard: int) -> DecompositionArtifact:
    """The decomposition layout (heads/rest/embedding/ids per shard) with unit-norm embeddings."""
    path.mkdir()
    n, e = heads_NLHE.shape[0], heads_NLHE.shape[-1]
    emb = np.zeros((n, e), np.float32)
    emb[:, 0] = 1.0
    names = []
    for i, lo in enumerate(range(0, n, shard)):
        name = f"{i:05d}"
        atomic_save_npy(path / f"heads-{name}.npy", heads_NLHE[lo : lo + shard].astype(np.float32))
        atomic_save_npy(path / f"rest-{name}.npy", emb[lo : lo + shard])
        atomic_save_npy(path / f"embedding-{name}.npy", emb[lo : lo + shard])
        (path / f"ids-{name}.txt").write_text("".join(f"img{j}\n" for j in range(lo, min(lo + shard, n))))
        names.append(name)
    manifest = {"layers": [0], "num_heads": heads_NLHE.shape[2], "embed_dim": e, "n_images": n, "skipped": [], "shards": names}
    return DecompositionArtifact(path, manifest)


@pytest.fixture
def planted(tmp_path):
    """Head 0: four orthogonal pool texts with well separated variances; head 1: isotropic noise."""
    rng = np.random.default_rng(0)
    n, e, t = 400, 32, 300
    text = rng.normal(size=(t, e))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    q = np.linalg.qr(rng.normal(size=(e, e)))[0]
    text[[3, 50, 120, 200]] = q[:4]
    clear = rng.normal(size=(n, 4)) * np.array([8.0, 4.0, 2.0, 1.0]) @ q[:4] + 0.01 * rng.normal(size=(n, e))
    noise = rng.normal(size=(n, e))
    heads = np.stack([clear, noise], axis=1)[:, None]  # [N, L=1, H=2, E]
    artifact = _write_artifact(tmp_path / "art", heads, shard=150)
    return artifact, DescriptionPool(tuple(f"text {i}" for i in range(t)), source="planted"), text.astype(np.float32)


def test_bucket_moments_add_up_to_the_full_moments(planted):
    artifact, _, _ = planted
    bucket_N = bucket_of_images(artifact.n_images, 10, seed=0)
    assert np.bincount(bucket_N).tolist() == [40] * 10
    full, buckets = stream_moments(artifact, slice(1, 2), bucket_N)
    assert full.num_heads == 1 and len(buckets) == 10 and sum(b.count for b in buckets) == 400
    total = sum_moments(buckets)
    torch.testing.assert_close(total.gram_GEE, full.gram_GEE)
    torch.testing.assert_close(total.sum_GE, full.sum_GE)
    whole = HeadMoments.from_data(np.concatenate([np.load(artifact.path / f"heads-{s}.npy")[:, 0, 1] for s in artifact.shard_names])[None])
    torch.testing.assert_close(full.gram_GEE, whole.gram_GEE)


def test_stability_separates_a_clear_head_from_noise_and_reaches_the_ccs_table(planted):
    artifact, pool, text = planted
    config = SpanConfig(m=4, rank=32, stability=StabilityConfig(resamples=6, buckets=10, seed=0), max_moment_bytes=1)
    table = spans_table("m", artifact, pool, text, config)
    per_head = table.group_by("head").agg(pl.col("stability").first(), pl.col("span1_stability").first()).sort("head")
    clear, noise = per_head.row(0, named=True), per_head.row(1, named=True)
    assert table.filter(pl.col("head") == 0)["text"].to_list() == ["text 3", "text 50", "text 120", "text 200"]
    assert clear["stability"] == 1.0 and clear["span1_stability"] == 1.0
    assert noise["stability"] < 0.6, noise
    # Off: null columns, same spans (the full-data moments do not depend on the buckets).
    off = spans_table("m", artifact, pool, text, SpanConfig(m=4, rank=32, stability=StabilityConfig(resamples=0)))
    assert off["stability"].is_null().all() and off["text"].to_list() == table["text"].to_list()
    facts = span_facts(table)
    assert facts.height == 2 and set(facts.columns) >= {"effective_rank", "stability", "span1_stability"}


def test_resamples_in_the_numerical_basis_match_the_full_space(tmp_path):
    from ccs_dist.spans.stability import span_stability
    from ccs_dist.spans.textspan import numerical_basis, textspan_heads

    rng = np.random.default_rng(5)
    n, e, t = 300, 48, 200
    q = np.linalg.qr(rng.normal(size=(e, e)))[0]
    coef = rng.normal(size=(n, 6)) * np.array([5.0, 3.0, 2.0, 1.5, 1.0, 0.7])
    head = coef @ q[:6] + 0.4 * q[6]  # rank 7: six directions and an offset, as a head's affine subspace
    text = rng.normal(size=(t, e))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    artifact = _write_artifact(tmp_path / "art", head[:, None, None, :], shard=100)
    bucket_N = bucket_of_images(n, 10, seed=0)
    full, buckets = stream_moments(artifact, slice(None), bucket_N)
    basis = numerical_basis(full)
    assert basis.shape == (1, e, 7)
    texts = [str(i) for i in range(t)]

    def run(moments, basis_GEX=None):
        return textspan_heads(moments, text, texts, m=5, rank=32, basis_GEX=basis_GEX)

    ref = run(full)
    assert ref[0].rank == 7
    cfg = StabilityConfig(resamples=6, buckets=10)
    reduced = span_stability(buckets, ref, run, cfg, basis)
    assert reduced == span_stability(buckets, ref, run, cfg, None)
    # a projected resample gives the same spans, ranks and explained fractions as the full-space one
    half = sum_moments(buckets[:5])
    a, b = run(half)[0], run(half.project(basis), basis)[0]
    assert a.indices == b.indices and a.rank == b.rank == 7
    np.testing.assert_allclose(a.variances, b.variances, rtol=1e-6)
