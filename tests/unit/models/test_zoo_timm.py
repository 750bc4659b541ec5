"""timm towers through open_clip (SigLIP's attention-pooled ViT, EVA-02): head access, decomposition, pruning.

Small random-init builds of the real recipes (``ccs-tiny-attnpool``: timm's SigLIP ViT with
``AttentionPoolLatent``; ``ccs-tiny-eva02``: timm's EVA-02 CLIP with rotary embeddings, SwiGLU and inner
norms), every parameter perturbed so that zero-initialised biases and unit layer scales carry weight.
The real sizes (``ViT-B-16-SigLIP2``, ``EVA02-B-16``) are built once in the ``slow`` test.
"""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch
import torch.nn.functional as F

from ccs_dist.core.errors import UserError
from ccs_dist.decomposition import kernel
from ccs_dist.decomposition.kernel import decompose
from ccs_dist.models import load_model
from ccs_dist.models.head_attention import STOCK
from ccs_dist.models.head_proj import HeadProj
from ccs_dist.models.masked import encode_image_head_sets, encode_image_pruned

TINY = ["ccs-tiny-attnpool", "ccs-tiny-eva02"]


def _perturbed(arch):
    loaded = load_model(arch, device="cpu")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in loaded.model.visual.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return loaded


@pytest.fixture(scope="module", params=TINY)
def zoo(request):
    return _perturbed(request.param)


@pytest.fixture(scope="module")
def attnpool():
    return _perturbed("ccs-tiny-attnpool")


def _images(n, seed=0, size=32):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _rel_err(approx_BE, exact_BE):
    return float(((approx_BE - exact_BE).norm(dim=-1) / exact_BE.norm(dim=-1)).max())


def _stock(loaded):
    """The same weights in a stock open_clip build (timm's own Linear out-projections)."""
    stock = open_clip.create_model(loaded.arch, pretrained=None)
    stock.load_state_dict(loaded.model.state_dict())
    return stock.eval()


def test_head_access_reuses_parameters_and_keeps_the_stock_output(zoo):
    assert zoo.family == ("timm-vit" if zoo.arch == "ccs-tiny-attnpool" else "timm-eva")
    assert (zoo.num_layers, zoo.num_heads, zoo.head_dim, zoo.width) == (3, 4, 16, 64)
    blocks = zoo.visual.trunk.blocks
    assert all(isinstance(b.attn.proj, HeadProj) and b.attn.proj is zoo.heads[i] for i, b in enumerate(blocks))
    stock = _stock(zoo)
    assert list(stock.state_dict()) == list(zoo.model.state_dict())  # keys unchanged
    assert zoo.heads[1].weight is dict(zoo.model.named_parameters())["visual.trunk.blocks.1.attn.proj.weight"]
    x = _images(3)
    with torch.no_grad():
        ours, theirs = zoo.model.encode_image(x), stock.encode_image(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers", [1, 3, [0, 2]])
def test_terms_plus_rest_equal_encode_image(zoo, layers):
    x = _images(3, seed=2)
    d = decompose(zoo, x, layers=layers)
    n = layers if isinstance(layers, int) else len(layers)
    assert d.heads.shape == (3, n, zoo.num_heads, zoo.embed_dim) and d.rest.shape == (3, zoo.embed_dim)
    assert _rel_err(d.heads.sum((1, 2)) + d.rest, d.embedding) <= 1e-5
    with torch.no_grad():
        torch.testing.assert_close(d.embedding, zoo.model.encode_image(x), rtol=1e-5, atol=1e-6)
    assert d.unit_kind == tuple(("head",) * zoo.num_heads for _ in d.layers)
    assert d.heads.abs().amax() > 1e-3 and d.rest.abs().amax() > 1e-3
    # the nulls: a wrong share, or a head term without its 1/H of the out-projection bias, break the identity
    assert _rel_err(d.heads.sum((1, 2)) * 1.01 + d.rest, d.embedding) > 1e-4
    assert all(m.control == STOCK and m._capture.z_BHPK is None for m in zoo.heads)


def test_a_missing_bias_share_breaks_the_identity(zoo, monkeypatch):
    """The null: head terms without their 1/H of the out-projection bias no longer sum to the embedding."""
    x = _images(2, seed=3)
    good = decompose(zoo, x, layers=2)
    assert _rel_err(good.heads.sum((1, 2)) + good.rest, good.embedding) <= 1e-5

    def unbiased(real):
        def fn(tower, layer, z):
            scale = tower.attn_scales[layer]
            bias = tower.heads[layer].bias.float() / tower.heads[layer].num_heads
            return real(tower, layer, z) - bias * (scale.float() if scale is not None else 1.0)
        return fn
    monkeypatch.setattr(kernel, "_head_writes", unbiased(kernel._head_writes))
    monkeypatch.setattr(kernel, "_cls_head_writes", unbiased(kernel._cls_head_writes))
    bad = decompose(zoo, x, layers=2)
    assert _rel_err(bad.heads.sum((1, 2)) + bad.rest, bad.embedding) > 1e-3


def test_every_write_is_recorded_or_the_decomposition_refuses(zoo):
    from ccs_dist.decomposition.kernel import _TowerRecorder

    with _TowerRecorder(zoo, (2,)) as rec, torch.no_grad():
        zoo.model.encode_image(_images(1))
    modules = dict(zoo.model.named_modules())
    assert len(rec.writes) == rec.expected() == 2 + 2 * 3 + (2 if zoo.tower.pool == "map" else 0)
    assert {k.split(":")[0] for k in rec.writes} <= set(modules)
    # a write computed without passing its recorded module (here layer 1's MLP, called around its hooks) is an
    # error, not a silent wrong answer
    blk, mlp = zoo.visual.trunk.blocks[1], zoo.visual.trunk.blocks[1].mlp

    class Bypass(torch.nn.Module):
        def forward(self, x):
            return mlp.forward(x)

    blk.mlp = Bypass()
    try:
        with pytest.raises(RuntimeError, match="hooks fired 9 of 10 |hooks fired 7 of 8 "):
            decompose(zoo, _images(1), layers=1)
    finally:
        blk.mlp = mlp


def _naive_zeroed(loaded, x, heads):
    """Stock open_clip model with the out-projection input columns of ``heads`` zeroed."""
    stock = _stock(loaded)
    K = loaded.head_dim
    with torch.no_grad():
        for layer, head in heads:
            stock.visual.trunk.blocks[layer].attn.proj.weight[:, head * K : (head + 1) * K] = 0
        return stock.encode_image(x)


def test_pruning_equals_weight_zeroing(zoo):
    x = _images(3, seed=4)
    sets = [[], ["L2.H1"], ["L0.H3", "L1.H0", "L2.H2"], ["L2.H1"]]
    out = encode_image_head_sets(zoo, x, sets, max_batch=6)
    for s, names in enumerate(sets):
        heads = [(int(n[1]), int(n[4])) for n in names]
        naive = _naive_zeroed(zoo, x, heads)
        assert (out[s] - naive).abs().max() <= 1e-5, names
        if names:
            assert (out[s] - out[0]).abs().max() > 1e-3  # pruning did something
    torch.testing.assert_close(encode_image_pruned(zoo, x, ["L2.H1"]), out[1], rtol=1e-6, atol=1e-6)


def test_class_token_head_term_by_hand():
    """EVA-02: head L2.H1's term from the out-projection input (rotary, q/k and inner norms all the tower's own),
    through ``norm`` linearised at the final CLS residual and the trunk's head Linear (its bias shared like beta)."""
    loaded = _perturbed("ccs-tiny-eva02")
    trunk = loaded.visual.trunk
    x = _images(2, seed=5)
    seen = {}
    hooks = [trunk.blocks[2].attn.proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("z", a[0].detach().clone())),
             trunk.norm.register_forward_pre_hook(lambda m, a: seen.__setitem__("final", a[0][:, 0].detach().clone()))]
    with torch.no_grad():
        loaded.model.encode_image(x)
    for h in hooks:
        h.remove()
    d = decompose(loaded, x, layers=[2])
    L, H, K = 3, 4, 16
    proj, norm, head = trunk.blocks[2].attn.proj, trunk.norm, trunk.head
    with torch.no_grad():
        write_BD = seen["z"][:, 0, K : 2 * K] @ proj.weight[:, K : 2 * K].T + proj.bias / H
        write_BD = write_BD * trunk.blocks[2].gamma_1 if trunk.blocks[2].gamma_1 is not None else write_BD
        r = seen["final"]
        mu, sigma = r.mean(-1, keepdim=True), (r.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()
        share = 1.0 / ((2 * L + 1) * H)
        term = ((write_BD - mu * share) * norm.weight / sigma + norm.bias * share) @ head.weight.T + head.bias * share
    torch.testing.assert_close(d.heads[:, 0, 1], term, rtol=1e-4, atol=1e-6)
    assert term.abs().max() > 1e-3


def test_attention_pool_units_and_a_carried_head_by_hand(attnpool):
    """SigLIP: the pooling's heads + MLP sum to the embedding; a trunk head carried through the pooling, recomputed
    here from the pooling's own q / kv weights (not the kernel's helper), equals the kernel's term."""
    loaded = attnpool
    trunk, ap = loaded.visual.trunk, loaded.visual.trunk.attn_pool
    x = _images(2, seed=6)
    d = decompose(loaded, x, layers=[1, 2])
    assert d.pool.shape == (2, ap.num_heads + 1, loaded.embed_dim)
    assert d.pool_kind == ("pool_head",) * 4 + ("pool_mlp",)
    assert _rel_err(d.pool.sum(1), d.embedding) <= 1e-5
    assert _rel_err(d.pool[:, :-1].sum(1), d.embedding) > 1e-2  # the MLP is a real term

    seen = {}
    hooks = [trunk.blocks[2].attn.proj.register_forward_pre_hook(lambda m, a: seen.__setitem__("z", a[0].detach().clone())),
             trunk.norm.register_forward_pre_hook(lambda m, a: seen.__setitem__("final", a[0].detach().clone()))]
    with torch.no_grad():
        loaded.model.encode_image(x)
    for h in hooks:
        h.remove()
    L, H, K, D = 3, 4, 16, 64
    head = 3
    with torch.no_grad():
        blk = trunk.blocks[2]
        cols = slice(head * K, (head + 1) * K)
        write_BPD = (seen["z"][..., cols] @ blk.attn.proj.weight[:, cols].T + blk.attn.proj.bias / H) * blk.ls1.gamma
        r = seen["final"]
        mu, sigma = r.mean(-1, keepdim=True), (r.var(-1, unbiased=False, keepdim=True) + trunk.norm.eps).sqrt()
        tokens = trunk.norm(r)
        q = ap.q(ap.latent)[0, 0].view(H, K)
        k = (tokens @ ap.kv.weight[:D].T + ap.kv.bias[:D]).view(2, -1, H, K)
        a_BHP = torch.softmax(torch.einsum("hk,bphk->bhp", q, k) / K**0.5, dim=-1)
        s = 1.0 / ((2 * L + 1) * H)
        n_BPD = (write_BPD - mu * s) * trunk.norm.weight / sigma + trunk.norm.bias * s
        v_BPHK = (n_BPD @ ap.kv.weight[D:].T + ap.kv.bias[D:] * s).view(2, -1, H, K)
        z_BHK = torch.einsum("bhp,bphk->bhk", a_BHP, v_BPHK)
        term = z_BHK.reshape(2, H * K) @ ap.proj.weight.T + ap.proj.bias * s
    torch.testing.assert_close(d.heads[:, 1, head], term, rtol=1e-4, atol=1e-6)
    assert term.abs().max() > 1e-3


def test_spatial_terms_are_refused_for_towers(zoo):
    with pytest.raises(UserError, match="spatial"):
        decompose(zoo, _images(1), layers=1, spatial_heads=[(2, 0)])


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["EVA02-B-16", "ViT-B-16-SigLIP2"])
def test_real_size_towers(arch, monkeypatch):
    """The real architectures at random init (the SigLIP2 tokenizer is a hub download: offline it is a one-line
    UserError, so the text side here is open_clip's default tokenizer)."""
    if arch == "ViT-B-16-SigLIP2":
        with pytest.raises(UserError, match="tokenizer of ViT-B-16-SigLIP2 is not reachable.*timm/ViT-B-16-SigLIP2"):
            load_model(arch, device="cpu")
        monkeypatch.setattr(open_clip, "get_tokenizer", lambda name: open_clip.SimpleTokenizer())
    loaded = load_model(arch, device="cpu")
    with torch.no_grad():
        for p in loaded.model.visual.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x = _images(2, seed=7, size=224)
    d = decompose(loaded, x, layers=4)
    assert d.heads.shape == (2, 4, 12, loaded.embed_dim)
    assert _rel_err(d.heads.sum((1, 2)) + d.rest, d.embedding) <= 1e-5
    if d.pool is not None:
        assert _rel_err(d.pool.sum(1), d.embedding) <= 1e-5
    pruned = encode_image_pruned(loaded, x, ["L11.H3", "L10.H0"])
    assert (pruned - _naive_zeroed(loaded, x, [(11, 3), (10, 0)])).abs().max() <= 1e-4
