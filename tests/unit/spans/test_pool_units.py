"""An attention pooling's units (SigLIP's pooling heads and MLP) through the decomposition artifact into the spans
table, beside the trunk heads, with their kind of unit; a class-token tower has none."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from ccs_dist.artifacts.schemas import trunk_heads
from ccs_dist.artifacts.store import ArtifactStore
from ccs_dist.ccs.scores import ccs_at_k
from ccs_dist.data.images import resolve_image_set
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.image_set import decompose_image_set
from ccs_dist.decomposition.kernel import decompose, pool_unit_kinds
from ccs_dist.decomposition.moments import HeadMoments, normalised_heads_GNE
from ccs_dist.models import load_model
from ccs_dist.spans.table import SpanConfig, spans_table
from ccs_dist.spans.textspan import textspan_heads
from ccs_dist.text.pool import DescriptionPool

pytest.importorskip("timm")
COMMON = dict(layers=2, batch_size=8, shard_size=16, workers=0, progress=False)


@pytest.fixture(scope="module")
def attnpool():
    loaded = load_model("ccs-tiny-attnpool", device="cpu")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # zero-initialised biases would hide a unit's share
        for p in loaded.model.visual.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return loaded


def _texts(dim, n=60):
    return [f"t{i}" for i in range(n)], np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)


@pytest.mark.parametrize("keep", ["heads", "moments"])
def test_pool_units_get_their_own_rows_and_spans(attnpool, cache_dir, keep):
    images = resolve_image_set("synthetic:40", cache_dir)
    artifact = decompose_image_set(attnpool, images, ArtifactStore(cache_dir), DecomposeConfig(**COMMON, keep=keep))
    kinds = pool_unit_kinds(attnpool)
    assert artifact.pool_units == kinds == ("pool_head",) * 4 + ("pool_mlp",)
    texts, text_TE = _texts(attnpool.embed_dim)
    table = spans_table("m", artifact, DescriptionPool(tuple(texts), source="test"), text_TE, SpanConfig(m=3, rank=8))
    units = table.group_by("layer", "head", "unit").len().sort("layer", "head")
    assert units.filter(pl.col("unit") == "head").select("layer", "head").rows() == [(l, h) for l in (1, 2) for h in range(4)]
    pool = units.filter(pl.col("unit") != "head")
    assert pool.rows() == [(3, u, kinds[u], 3) for u in range(5)]  # at layer = the trunk's depth, the MLP last
    assert trunk_heads(table).height == 8 * 3
    # the pooling units' spans are TextSpan on their own terms, computed here from decompose() directly
    batch_B3HW = torch.stack([attnpool.preprocess(images.load(i)) for i in range(len(images))])
    d = decompose(attnpool, batch_B3HW, 2)
    by_hand = textspan_heads(HeadMoments.from_data(normalised_heads_GNE(d.pool, d.embedding)), text_TE, texts, m=3, rank=8)
    got = [tuple(table.filter((pl.col("layer") == 3) & (pl.col("head") == u)).sort("rank")["text"]) for u in range(5)]
    assert got == [r.texts for r in by_hand]
    # null: the pooling units' spans are not those of the trunk heads (the rows are not a copy)
    assert got[:4] != [tuple(table.filter((pl.col("layer") == 2) & (pl.col("head") == h)).sort("rank")["text"]) for h in range(4)]


def test_a_class_token_tower_has_no_pool_units_and_ccs_at_k_counts_trunk_heads(tiny, cache_dir):
    assert pool_unit_kinds(tiny) == ()
    artifact = decompose_image_set(tiny, resolve_image_set("synthetic:20", cache_dir), ArtifactStore(cache_dir), DecomposeConfig(**COMMON))
    texts, text_TE = _texts(tiny.embed_dim)
    table = spans_table("m", artifact, DescriptionPool(tuple(texts), source="test"), text_TE, SpanConfig(m=3, rank=8))
    assert set(table["unit"]) == {"head"} and not artifact.pool_units
    ccs = pl.DataFrame({"model": ["m"] * 3, "layer": [2, 2, 3], "head": [0, 1, 0], "ccs": [5, 0, 5],
                        "flagged": [False] * 3, "unit": ["head", "head", "pool_head"]})
    at_k = ccs_at_k(ccs)
    assert at_k.filter(pl.col("k") == 5)["fraction"].item() == 0.5 and at_k["n_heads"][0] == 2
    assert ccs_at_k(ccs.drop("unit"))["n_heads"][0] == 3  # a table without kinds: every row a head


def test_a_sharded_decomposition_gives_the_pool_units_of_one_pass(attnpool, cache_dir):
    images = resolve_image_set("synthetic:40", cache_dir)
    store = ArtifactStore(cache_dir)
    texts, text_TE = _texts(attnpool.embed_dim)
    pool = DescriptionPool(tuple(texts), source="test")
    tables = [spans_table("m", decompose_image_set(attnpool, images, store, DecomposeConfig(**COMMON, keep=keep, shards=shards)),
                          pool, text_TE, SpanConfig(m=3, rank=8)) for keep, shards in (("moments", 1), ("moments", 3))]
    same = ["layer", "head", "unit", "rank", "text", "effective_rank"]
    assert tables[0].select(same).equals(tables[1].select(same)) and (tables[0]["unit"] == "pool_mlp").sum() == 3
