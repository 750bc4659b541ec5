"""The head-level attention module: same parameters, same outputs, per-head access, per-sample masks."""

from __future__ import annotations

import contextlib

import open_clip
import pytest
import torch

from ccs_dist.models import HeadAttention, load_model
from ccs_dist.models.head_attention import STOCK
from ccs_dist.models.masked import encode_image_masked


def _stock_twin(loaded):
    """A stock open_clip model (torch MultiheadAttention) carrying the same weights."""
    stock = open_clip.create_model(loaded.arch, pretrained=None)
    stock.load_state_dict(loaded.model.state_dict())
    return stock.eval()


def _images(loaded, n, seed=0):
    size = loaded.visual.image_size
    size = size[0] if isinstance(size, tuple) else size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_every_image_attention_is_replaced_and_shares_parameters(tiny):
    blocks = tiny.visual.transformer.resblocks
    assert len(tiny.heads) == len(blocks) == 3
    for layer, block in enumerate(blocks):
        assert isinstance(block.attn, HeadAttention)
        assert block.attn is tiny.heads[layer]
        assert block.attn.name == f"visual.transformer.resblocks.{layer}.attn"
    # the hook names are the module paths (pinned, as TransformerLens pins its hook names)
    paths = {module: name for name, module in tiny.model.named_modules()}
    assert [paths[m] for m in tiny.heads] == [m.name for m in tiny.heads] == [
        "visual.transformer.resblocks.0.attn", "visual.transformer.resblocks.1.attn", "visual.transformer.resblocks.2.attn"]
    names = {n for n, _ in tiny.model.named_parameters()}
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in names
    assert "visual.transformer.resblocks.0.attn.out_proj.weight" in names


def test_state_dict_keys_and_values_round_trip(tiny, tmp_path):
    stock = _stock_twin(tiny)
    assert list(stock.state_dict()) == list(tiny.model.state_dict())
    path = tmp_path / "tiny.pt"
    torch.save(tiny.model.state_dict(), path)
    again = load_model("ccs-tiny", str(path), device="cpu")
    for (k, a), (_, b) in zip(tiny.model.state_dict().items(), again.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert again.key == "ccs-tiny/file:tiny.pt" and not again.random_init


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["ccs-tiny", "ViT-B-32"])
def test_unmasked_output_equals_stock_open_clip(arch, tiny, vit_b32):
    loaded = tiny if arch == "ccs-tiny" else vit_b32
    x = _images(loaded, 3)
    with torch.no_grad():
        ours = loaded.model.encode_image(x)
        stock = _stock_twin(loaded).encode_image(x)
    torch.testing.assert_close(ours, stock, rtol=1e-5, atol=1e-5)


def test_cls_head_writes_sum_to_the_attention_output(tiny):
    module = tiny.heads[1]
    x = torch.randn(2, 17, tiny.width)
    with module.controlled(capture_cls=True) as capture, torch.no_grad():
        out, _ = module(x, x, x, need_weights=False)
    assert capture.cls_BHD.shape == (2, tiny.num_heads, tiny.width)
    torch.testing.assert_close(capture.cls_BHD.sum(1) + module.out_proj.bias, out[:, 0], rtol=1e-5, atol=1e-6)
    assert module.control == STOCK


def test_control_context_nests_restores_and_rejects_bad_fields(tiny):
    module = tiny.heads[0]
    keep = torch.ones(2, tiny.num_heads)
    with module.controlled(capture_cls=True) as outer:
        with module.controlled(keep_BH=keep) as inner:
            assert inner is outer  # no capture field named: the enclosing capture is shared
            assert module.control.capture_cls and module.control.keep_BH is keep
        assert module.control.keep_BH is None and module.control.capture_cls
        with pytest.raises(RuntimeError), module.controlled(ablation="zero", keep_BH=keep):
            raise RuntimeError("boom")
        assert module.control.keep_BH is None
    assert module.control == STOCK and module.control.keep_BH is None
    with pytest.raises(ValueError):
        with module.controlled(keep_BH=keep, ablation="mean"):  # no reference means
            pass
    with pytest.raises(ValueError):
        with module.controlled(ablation="half"):
            pass
    assert module.control == STOCK


def test_per_sample_mask_changes_only_masked_samples(tiny):
    x = _images(tiny, 4, seed=1)
    keep = torch.ones(4, tiny.num_layers, tiny.num_heads)
    keep[1, 2, 0] = 0
    keep[3, 1, :2] = 0
    with torch.no_grad():
        plain = tiny.model.encode_image(x)
    masked = encode_image_masked(tiny, x, keep)
    torch.testing.assert_close(masked[[0, 2]], plain[[0, 2]], rtol=1e-6, atol=1e-6)
    for i in (1, 3):
        assert (masked[i] - plain[i]).abs().max() > 1e-4
    assert all(m.control == STOCK and m.control.keep_BH is None for m in tiny.heads)


def test_mean_ablation_replaces_the_head_with_its_reference_mean(tiny):
    from ccs_dist.models.masked import compute_head_means, encode_image_pruned, reference_means

    x = _images(tiny, 6, seed=2)
    with torch.no_grad():
        plain = tiny.model.encode_image(x)
    zeroed = encode_image_pruned(tiny, x, ["L2.H1", "L0.H2"], ablation="zero")
    # Means over one image are that image's own outputs: mean-ablating it changes nothing.
    for i in (0, 4):
        with reference_means(tiny, [x[i : i + 1]]):
            self_meaned = encode_image_pruned(tiny, x[i : i + 1], ["L2.H1", "L0.H2"], ablation="mean")
        torch.testing.assert_close(self_meaned, plain[i : i + 1], rtol=1e-5, atol=1e-5)
    # Means of zero are zero ablation exactly; the real means over the batch give neither plain nor zero.
    means = compute_head_means(tiny, [x[:3], x[3:]])
    assert means[2].shape == (tiny.num_heads, 17, tiny.head_dim)
    with contextlib.ExitStack() as stack:
        for layer, mean_HPK in means.items():
            stack.enter_context(tiny.heads[layer].controlled(mean_HPK=torch.zeros_like(mean_HPK)))
        zero_meaned = encode_image_pruned(tiny, x, ["L2.H1", "L0.H2"], ablation="mean")
    torch.testing.assert_close(zero_meaned, zeroed, rtol=0, atol=1e-6)
    with reference_means(tiny, [x[:3], x[3:]]) as installed:
        torch.testing.assert_close(installed[2], means[2])
        meaned = encode_image_pruned(tiny, x, ["L2.H1", "L0.H2"], ablation="mean")
    assert (meaned - zeroed).abs().max() > 1e-5 and (meaned - plain).abs().max() > 1e-5
    # the means are cleared on exit: mean ablation now refuses to run
    assert all(m.control.mean_HPK is None for m in tiny.heads)
    with pytest.raises(ValueError):
        encode_image_pruned(tiny, x, ["L2.H1"], ablation="mean")
