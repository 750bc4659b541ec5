"""The planted-concept loss: it sees each head's direct contribution exactly as the decomposition does, and
its gradient reaches what the design says it reaches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ccs_dist.decomposition.kernel import decompose
from ccs_dist.models.loading import load_model
from ccs_dist.data.toy import world
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


def _text_params(toy):
    return [p for n, p in toy.model.named_parameters() if not n.startswith("visual.") and n != "logit_scale"]


def _loss_and_grads(toy, batch, span: bool):
    model = toy.model
    model.zero_grad(set_to_none=True)
    tokens = _Tokens(__import__("open_clip").get_tokenizer("ccs-toy"))
    from ccs_dist.toy.planted import factor_text_embeddings
    from ccs_dist.toy.train import _span_lines

    targets = factor_text_embeddings(model, tokens)
    lines = _span_lines(model, tokens, np.random.default_rng(0)) if span else None
    with capture_head_terms(toy.visual, (0, 1, 2, 3)) as terms:
        raw = toy.visual(batch.images)
        aux = planted_loss(terms(), raw, batch.values_BF, batch.varied_B, targets.__getitem__, lines)
    (aux.carry + aux.invariance + aux.span).backward()
    return aux


@pytest.mark.parametrize("span", [False, True])
def test_the_gradient_reaches_the_planted_heads_only_where_no_later_head_reads(toy, span):
    """In the last layer nothing reads a head's output but the embedding, so the loss (linearisation point
    and the carry's text targets held constant) must leave the free head's weights untouched; the text
    tower gets a gradient from the span loss alone."""
    aux = _loss_and_grads(toy, _batch(64), span)
    assert 0 < aux.invariance.item() < 1 and aux.carry.item() > 0 and (aux.span.item() > 0) == span
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
    text_moved = any(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in _text_params(toy))
    assert text_moved == span
    toy.model.zero_grad(set_to_none=True)


def test_the_span_loss_prefers_a_head_along_its_own_factor_lines():
    from ccs_dist.toy.planted import SpanLines, span_loss

    rng = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(4, 16, generator=rng), dim=-1)
    lines = SpanLines(text, ("size", "size", "shape", ""))
    coeff = torch.randn(200, 1, generator=rng)
    along_own, along_shape = coeff * text[0], coeff * text[2]
    assert span_loss(along_own, lines, "size") < 0.7 < span_loss(along_shape, lines, "size")


def test_the_invariance_loss_is_zero_for_a_head_that_sees_its_factor_only():
    batch = _batch(64)
    f = world.FACTOR_NAMES.index("colour")
    rng = torch.Generator().manual_seed(0)
    codes = torch.randn(6, 8, generator=rng)
    pure = codes[batch.values_BF[:, f]]  # a function of colour alone
    mixed = pure + torch.randn(64, 8, generator=rng)
    terms = {0: torch.stack([pure, mixed], 1)}
    text = {"colour": torch.nn.functional.normalize(codes, dim=-1)}
    one = planted_loss(terms, torch.ones(64, 8), batch.values_BF, batch.varied_B, text.__getitem__, planted={(0, 0): "colour"})
    two = planted_loss(terms, torch.ones(64, 8), batch.values_BF, batch.varied_B, text.__getitem__, planted={(0, 1): "colour"})
    assert abs(float(one.invariance)) < 1e-6 and float(two.invariance) > 0.1
    assert float(one.carry) < float(two.carry)
