"""Soft-pruning: the one-pass multi-set engine against naive out-projection weight zeroing."""

from __future__ import annotations

import open_clip
import pytest
import torch

from ccs_dist.core.errors import UserError
from ccs_dist.models.masked import encode_image_head_sets, encode_image_masked, encode_image_pruned, keep_masks

HEAD_SETS = [
    [],
    ["L11.H5", "L10.H8"],
    ["L8.H0", "L9.H1", "L10.H2", "L11.H11"],
    ["L2.H3"],  # a low layer: the shared prefix is short
    ["L11.H5", "L10.H8"],  # a repeat: computed once
    [f"L{layer}.H{head}" for layer in range(8, 12) for head in range(0, 12, 2)],
]


def _naive(loaded, images, heads):
    """A stock open_clip model with the out-projection columns of ``heads`` zeroed."""
    stock = open_clip.create_model(loaded.arch, pretrained=None)
    stock.load_state_dict(loaded.model.state_dict())
    k = loaded.head_dim
    with torch.no_grad():
        for name in heads:
            layer, head = (int(p[1:]) for p in name.split("."))
            stock.visual.transformer.resblocks[layer].attn.out_proj.weight[:, head * k : (head + 1) * k] = 0
        return stock.eval().encode_image(images)


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))


@pytest.mark.slow
def test_head_sets_equal_naive_weight_zeroing(vit_b32, images):
    out = encode_image_head_sets(vit_b32, images, HEAD_SETS)
    assert out.shape == (len(HEAD_SETS), 3, vit_b32.embed_dim)
    for s, heads in enumerate(HEAD_SETS):
        naive = _naive(vit_b32, images, heads)
        assert (out[s] - naive).abs().max() <= 1e-4, heads
        if heads:
            assert (out[s] - out[0]).abs().max() > 1e-3  # pruning did something


@pytest.mark.slow
def test_empty_set_equals_the_unpruned_model(vit_b32, images):
    with torch.no_grad():
        plain = vit_b32.model.encode_image(images)
    torch.testing.assert_close(encode_image_pruned(vit_b32, images, []), plain, rtol=1e-5, atol=1e-5)


def test_shared_prefix_equals_recomputing_everything(tiny):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    sets = [["L2.H0"], ["L1.H1", "L2.H3"], [], ["L2.H0"]]
    together = encode_image_head_sets(tiny, x, sets, max_batch=4)  # forces several chunks
    masks = keep_masks(tiny, sets)
    for s in range(len(sets)):
        alone = encode_image_masked(tiny, x, masks[s].expand(4, -1, -1).clone())
        torch.testing.assert_close(together[s], alone, rtol=1e-5, atol=1e-6)


def test_head_names_out_of_range(tiny):
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(UserError, match="layer out of range"):
        encode_image_pruned(tiny, x, ["L3.H0"])
    with pytest.raises(UserError, match="head out of range"):
        encode_image_pruned(tiny, x, ["L0.H4"])
    with pytest.raises(UserError, match="bad head name"):
        encode_image_pruned(tiny, x, "L0H1")
