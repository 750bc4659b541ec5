"""Moments add up (merge == one pass), and a moments-only decomposition gives the spans of the full heads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.image_set import decompose_image_set
from ccs_dist.core.errors import UserError
from ccs_dist.data.images import resolve_image_set
from ccs_dist.decomposition.moments import merge_moments
from ccs_dist.decomposition.moments import bucket_of_images
from ccs_dist.artifacts.store import ArtifactStore
from ccs_dist.decomposition.moments import HeadMoments
from ccs_dist.spans.textspan import stream_moments, textspan_heads


def _heads(seed: int, n: int = 300, g: int = 3, e: int = 24) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(g, 5, e))
    return (rng.normal(size=(g, n, 5)) * [6.0, 3.0, 2.0, 1.0, 0.5]) @ basis + 0.3 + 0.01 * rng.normal(size=(g, n, e))


def test_shards_merged_equal_one_pass_bit_for_bit():
    x_GNE = torch.from_numpy(_heads(0))
    bounds = [(0, 100), (100, 180), (180, 300)]
    one_pass = HeadMoments(3, 24)
    for lo, hi in bounds:
        one_pass.update(x_GNE[:, lo:hi])
    parts = [HeadMoments.from_data(x_GNE[:, lo:hi]) for lo, hi in bounds]  # e.g. three workers' shards
    merged = merge_moments(parts)
    assert merged.count == one_pass.count == 300
    assert torch.equal(merged.sum_GE, one_pass.sum_GE) and torch.equal(merged.gram_GEE, one_pass.gram_GEE)
    assert torch.equal(parts[0].gram_GEE, HeadMoments.from_data(x_GNE[:, :100]).gram_GEE), "merging must not alter its inputs"


def test_merge_in_any_split_gives_the_same_spans():
    x_GNE = torch.from_numpy(_heads(1))
    text_TE = np.random.default_rng(2).normal(size=(60, 24))
    texts = [f"t{i}" for i in range(60)]
    whole = textspan_heads(HeadMoments.from_data(x_GNE), text_TE, texts, m=4, rank=10)
    merged = merge_moments([HeadMoments.from_data(x_GNE[:, lo : lo + 70]) for lo in range(0, 300, 70)])
    torch.testing.assert_close(merged.gram_GEE, HeadMoments.from_data(x_GNE).gram_GEE, rtol=1e-12, atol=1e-9)
    split = textspan_heads(merged, text_TE, texts, m=4, rank=10)
    assert [r.indices for r in split] == [r.indices for r in whole]
    assert [r.rank for r in split] == [r.rank for r in whole]


def test_merge_refuses_mismatched_heads():
    with pytest.raises(ValueError, match="cannot merge"):
        merge_moments([HeadMoments(2, 8), HeadMoments(3, 8)])
    with pytest.raises(ValueError, match="at least one"):
        merge_moments([])


def test_moments_only_decomposition_gives_the_spans_of_the_full_heads(tiny, cache_dir):
    images = resolve_image_set("synthetic:44", cache_dir)
    store = ArtifactStore(cache_dir)
    common = dict(layers=2, batch_size=8, shard_size=16, workers=0, progress=False)
    heads = decompose_image_set(tiny, images, store, DecomposeConfig(**common))
    kept = decompose_image_set(tiny, images, store, DecomposeConfig(**common, keep="moments"))
    assert kept.path != heads.path and kept.keep == "moments" and heads.keep == "heads"
    assert not list(kept.path.glob("heads-*.npy")) and kept.ids() == heads.ids()
    bucket_N = bucket_of_images(heads.n_images, 10, seed=0)  # what the spans stage asks for by default
    full_h, buckets_h = stream_moments(heads, slice(None), bucket_N)
    full_m, buckets_m = stream_moments(kept, slice(None), bucket_N)
    assert full_m.count == full_h.count == 44 and [b.count for b in buckets_m] == [b.count for b in buckets_h]
    torch.testing.assert_close(full_m.gram_GEE, full_h.gram_GEE, rtol=1e-9, atol=1e-12)
    for bm, bh in zip(buckets_m, buckets_h):
        torch.testing.assert_close(bm.gram_GEE, bh.gram_GEE, rtol=1e-9, atol=1e-12)
    text_TE = np.random.default_rng(0).normal(size=(80, tiny.embed_dim)).astype(np.float32)
    texts = [f"t{i}" for i in range(80)]
    spans_h = textspan_heads(full_h, text_TE, texts, m=3, rank=16)
    spans_m = textspan_heads(full_m, text_TE, texts, m=3, rank=16)
    assert [s.indices for s in spans_m] == [s.indices for s in spans_h]
    assert [s.rank for s in spans_m] == [s.rank for s in spans_h]
    np.testing.assert_allclose([s.variances for s in spans_m], [s.variances for s in spans_h], rtol=1e-9)
    # The spans stage itself (stability included) reads both kinds of artifact to the same table.
    from ccs_dist.spans.table import SpanConfig, spans_table
    from ccs_dist.text.pool import DescriptionPool

    pool = DescriptionPool(tuple(texts), source="test")
    table_h = spans_table("tiny", heads, pool, text_TE, SpanConfig(m=3, rank=16))
    table_m = spans_table("tiny", kept, pool, text_TE, SpanConfig(m=3, rank=16))
    same = ["layer", "head", "rank", "text", "effective_rank", "stability", "span1_stability"]
    assert table_m.select(same).equals(table_h.select(same)) and table_h["stability"].null_count() == 0
    np.testing.assert_allclose(table_m["variance"].to_numpy(), table_h["variance"].to_numpy(), rtol=1e-9)
    with pytest.raises(UserError, match="keeps only TextSpan's moments"):
        next(kept.iter_heads())
    with pytest.raises(UserError, match="dealt differently"):
        stream_moments(kept, slice(None), bucket_of_images(heads.n_images, 10, seed=1))


def test_fp16_heads_are_kept_in_half_precision(tiny, cache_dir):
    images = resolve_image_set("synthetic:10", cache_dir)
    store = ArtifactStore(cache_dir)
    common = dict(layers=1, batch_size=4, shard_size=8, workers=0, progress=False)
    full = np.concatenate(list(decompose_image_set(tiny, images, store, DecomposeConfig(**common)).iter_heads()))
    half = np.concatenate(list(decompose_image_set(tiny, images, store, DecomposeConfig(**common, keep="heads_fp16")).iter_heads()))
    assert half.dtype == np.float16 and full.dtype == np.float32
    np.testing.assert_allclose(half.astype(np.float32), full, rtol=2e-3, atol=1e-4)


def test_unknown_keep_mode():
    with pytest.raises(UserError, match="unknown keep mode"):
        DecomposeConfig(keep="everything")
