"""A decomposition split into shards done apart (any order, any worker) merges into what one worker gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.image_set import decompose_image_set, decompose_shard
from ccs_dist.data.images import resolve_image_set
from ccs_dist.core.errors import UserError
from ccs_dist.decomposition.moments import bucket_of_images
from ccs_dist.artifacts.store import ArtifactStore
from ccs_dist.spans.textspan import stream_moments

COMMON = dict(layers=2, batch_size=8, workers=0, progress=False)


@pytest.mark.parametrize("keep", ["heads", "moments"])
def test_shards_done_apart_in_any_order_equal_the_shards_done_in_turn(tiny, tmp_path, keep):
    images = resolve_image_set("synthetic:44", tmp_path / "images")
    config = DecomposeConfig(**COMMON, keep=keep, shards=3)
    in_turn = decompose_image_set(tiny, images, ArtifactStore(tmp_path / "a"), config)

    store = ArtifactStore(tmp_path / "b")
    images_b = images
    records = [decompose_shard(tiny, images_b, store, config, i) for i in (2, 0, 1)]  # three workers, any order
    assert [r["n_images"] for r in records] == [14, 15, 15]
    again = decompose_shard(tiny, images_b, store, config, 1)
    assert again["reused"] == "shard"  # a finished shard is not recomputed (resume)
    apart = decompose_image_set(tiny, images_b, store, config)  # merges, decomposes nothing more
    assert apart.n_images == in_turn.n_images == 44 and apart.ids() == in_turn.ids()
    assert apart.path.name == in_turn.path.name  # the same cache key
    bucket_N = bucket_of_images(44, 10, seed=0)
    (full_a, buckets_a), (full_t, buckets_t) = stream_moments(apart, slice(None), bucket_N), stream_moments(in_turn, slice(None), bucket_N)
    assert torch.equal(full_a.gram_GEE, full_t.gram_GEE) and torch.equal(full_a.sum_GE, full_t.sum_GE)
    assert all(torch.equal(a.gram_GEE, t.gram_GEE) for a, t in zip(buckets_a, buckets_t))
    assert decompose_shard(tiny, images_b, store, config, 0)["reused"] == "artifact"
    assert not list(apart.path.glob("shard-*")) and not list(apart.path.glob("0000*-moments*"))


def test_sharded_heads_are_the_one_pass_heads_up_to_batch_rounding(tiny, tmp_path):
    images = resolve_image_set("synthetic:20", tmp_path)
    store = ArtifactStore(tmp_path)
    one = decompose_image_set(tiny, images, store, DecomposeConfig(**COMMON))
    sharded = decompose_image_set(tiny, images, store, DecomposeConfig(**COMMON, shards=4))
    assert sharded.path != one.path and len(sharded.shard_names) == 4
    # other batch boundaries (a batch never spans two shards): float rounding of the batched matmuls only
    np.testing.assert_allclose(np.concatenate(list(sharded.iter_heads())), np.concatenate(list(one.iter_heads())),
                               rtol=1e-4, atol=1e-6)


def test_a_shard_out_of_range_is_refused(tiny, tmp_path):
    images = resolve_image_set("synthetic:8", tmp_path)
    with pytest.raises(UserError, match="shard 3 of a decomposition into 3 shards"):
        decompose_shard(tiny, images, ArtifactStore(tmp_path), DecomposeConfig(**COMMON, shards=3), 3)
