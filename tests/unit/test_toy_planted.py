"""The planted-concept loss: it sees each head's direct contribution exactly as the decomposition does, and
its gradient reaches what the design says it reaches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccs_dist.decompose import decompose
from ccs_dist.models.loading import load_model
from ccs_dist.toy import world
from ccs_dist.toy.planted import FREE_HEAD, PLANTED, capture_head_terms, planted_factor, planted_loss, planted_table
from ccs_dist.toy.train import TrainConfig, _Tokens, make_batch


@pytest.fixture(scope="module")
def toy():
    return load_model("ccs-toy", None, device="cpu", seed=3)


def _batch(n=32, seed=0):
    return make_batch(np.random.default_rng(seed), TrainConfig(batch_size=n))


def test_the_assignment_covers_every_factor_twice_and_leaves_free_heads():
    counts = {f: sum(v == f for v in PLANTED.values()) for f in world.FACTOR_NAMES}
    assert min(counts.values()) >= 2 and set(PLANTED.values()) <= set(world.FACTOR_NAMES)
    assert all(planted_factor(layer, FREE_HEAD) is None for layer in range(4))
    rows = planted_table()
    assert len(rows) == 16 and sum(r["planted_factor"] is None for r in rows) == 4


def test_the_differentiable_head_terms_equal_the_decomposition(toy):
    images = _batch(16).images
    with torch.no_grad(), capture_head_terms(toy.visual, (0, 1, 2, 3)) as terms:
        embedding = toy.visual(images)
        got = terms()
    expected = decompose(toy, images, layers=4)
    torch.testing.assert_close(embedding, expected.embedding, rtol=1e-5, atol=1e-6)
    for layer in range(4):
        torch.testing.assert_close(got[layer], expected.heads[:, layer], rtol=1e-4, atol=1e-6)


def _loss_and_grads(toy, batch):
    model = toy.model
    model.zero_grad(set_to_none=True)
    tokens = _Tokens(__import__("open_clip").get_tokenizer("ccs-toy"))
    from ccs_dist.toy.planted import factor_text_embeddings

    targets = factor_text_embeddings(model, tokens)
    with capture_head_terms(toy.visual, (0, 1, 2, 3)) as terms:
        raw = toy.visual(batch.images)
        aux = planted_loss(terms(), raw, batch.values_BF, batch.varied_B, targets.__getitem__)
    (aux.carry + aux.invariance).backward()
    return aux


def test_the_gradient_reaches_the_planted_heads_only_where_no_later_head_reads(toy):
    """In the last layer nothing reads a head's output but the embedding, so the loss (linearisation point
    and text targets held constant) must leave the free head's weights and the text tower untouched."""
    aux = _loss_and_grads(toy, _batch(64))
    assert 0 < aux.invariance.item() < 1 and aux.carry.item() > 0
    last = toy.visual.transformer.resblocks[3].attn
    K, D = last.head_dim, last.embed_dim
    w_out = last.out_proj.weight.grad.view(D, last.num_heads, K)
    w_in = last.in_proj_weight.grad.view(3, last.num_heads, K, D)
    assert torch.count_nonzero(w_out[:, FREE_HEAD]) == 0 and torch.count_nonzero(w_in[:, FREE_HEAD]) == 0
    for head in range(last.num_heads):
        if planted_factor(3, head) is not None:
            assert w_out[:, head].abs().sum() > 0 and w_in[:, head].abs().sum() > 0
    # earlier free heads feed later planted heads, so they do get gradient; the text tower never does
    first = toy.visual.transformer.resblocks[0].attn
    assert first.in_proj_weight.grad.view(3, first.num_heads, -1)[:, FREE_HEAD].abs().sum() > 0
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0
               for n, p in toy.model.named_parameters() if not n.startswith("visual.") and n != "logit_scale")
    toy.model.zero_grad(set_to_none=True)


def test_the_invariance_loss_is_zero_for_a_head_that_sees_its_factor_only():
    batch = _batch(64)
    f = world.FACTOR_NAMES.index("colour")
    rng = torch.Generator().manual_seed(0)
    codes = torch.randn(6, 8, generator=rng)
    pure = codes[batch.values_BF[:, f]]  # a function of colour alone
    mixed = pure + torch.randn(64, 8, generator=rng)
    terms = {0: torch.stack([pure, mixed], 1)}
    text = {"colour": torch.nn.functional.normalize(codes, dim=-1)}
    one = planted_loss(terms, torch.ones(64, 8), batch.values_BF, batch.varied_B, text.__getitem__, {(0, 0): "colour"})
    two = planted_loss(terms, torch.ones(64, 8), batch.values_BF, batch.varied_B, text.__getitem__, {(0, 1): "colour"})
    assert abs(float(one.invariance)) < 1e-6 and float(two.invariance) > 0.1
    assert float(one.carry) < float(two.carry)
