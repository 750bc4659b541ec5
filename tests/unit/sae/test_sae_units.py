"""SAE latents as units on ccs-tiny at random init: carried contributions sum to the embedding, pruning none is the
unpruned model, pruning a latent moves the embedding by exactly its carried term; descriptions and top images."""

from __future__ import annotations

import pytest

from tests.support.sae import make_sae
import torch
import torch.nn.functional as F

from ccs_dist.data.images import resolve_image_set
from ccs_dist.models import forward
from ccs_dist.sae.prune import encode_image_pruned_latents
from ccs_dist.sae.sites import parse_site, site_activations
from ccs_dist.sae.units import UnitsConfig, carry, describe_latents, joint_directions, top_images


@pytest.fixture(scope="module")
def x():
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("site", ["resid_post:-1", "embedding", "resid_post:0"])
def test_carried_terms_sum_to_the_embedding(tiny, x, site):
    sae = make_sae(tiny, site)
    c = carry(tiny, sae, x)
    with torch.no_grad():
        emb = forward.encode_image(tiny, x)
    torch.testing.assert_close(c.embedding_BE, emb, atol=1e-5, rtol=0)
    torch.testing.assert_close(c.contributions.sum(1) + c.rest_BE, emb, atol=1e-5, rtol=0)
    assert c.contributions.abs().max() > 1e-3 and c.indices.shape == (4, sae.k)


@pytest.mark.parametrize("site", ["resid_post:-1", "embedding"])
def test_pruning_none_is_unpruned_and_one_latent_moves_by_its_carry(tiny, x, site):
    sae = make_sae(tiny, site)
    c = carry(tiny, sae, x)
    with torch.no_grad():
        emb = forward.encode_image(tiny, x)
    for freeze in (False, True):
        torch.testing.assert_close(encode_image_pruned_latents(tiny, sae, x, [], freeze_ln=freeze), emb, atol=1e-5, rtol=0)
    # per image, its strongest latent pruned (a [B, n] mask): the embedding moves by minus that latent's carry
    drop = torch.zeros(4, sae.n_latents)
    drop[torch.arange(4), c.indices[:, 0]] = 1
    moved = encode_image_pruned_latents(tiny, sae, x, drop, freeze_ln=True) - emb
    assert moved.abs().max() > 1e-3
    torch.testing.assert_close(moved, -c.contributions[:, 0], atol=1e-5, rtol=0)
    # two latents at once: additive
    drop[torch.arange(4), c.indices[:, 1]] = 1
    moved2 = encode_image_pruned_latents(tiny, sae, x, drop, freeze_ln=True) - emb
    torch.testing.assert_close(moved2, -c.contributions[:, :2].sum(1), atol=1e-5, rtol=0)
    # the null: a carry without ln_post's centring (or its 1/sigma) misses the change
    if site != "embedding":
        W = sae.W_dec.detach()
        wrong = c.values[:, 0, None] * (W[c.indices[:, 0]] * tiny.visual.ln_post.weight) @ tiny.visual.proj * c.scale_B1
        assert (moved + wrong).abs().max() > 1e-3
        # the live LayerNorm agrees to first order only
        live = encode_image_pruned_latents(tiny, sae, x, drop, freeze_ln=False) - emb
        assert (live - moved2).abs().max() > 1e-7


def test_pruning_an_inactive_latent_changes_nothing(tiny, x):
    sae = make_sae(tiny, "resid_post:-1")
    c = carry(tiny, sae, x)
    inactive = sorted(set(range(sae.n_latents)) - set(c.indices.flatten().tolist()))[:3]
    with torch.no_grad():
        emb = forward.encode_image(tiny, x)
    torch.testing.assert_close(encode_image_pruned_latents(tiny, sae, x, inactive), emb, atol=1e-6, rtol=0)


def test_descriptions_are_the_nearest_pool_texts(tiny):
    sae = make_sae(tiny, "embedding")
    g = torch.Generator().manual_seed(5)
    text = F.normalize(torch.randn(30, tiny.embed_dim, generator=g), dim=-1)
    with torch.no_grad():
        sae.W_dec[3] = text[17]  # latent 3 points at text 17
    texts = [f"t{i}" for i in range(30)]
    table = describe_latents(tiny, sae, text.numpy(), texts, latents=[3, 5])
    assert table.columns == ["model", "unit_kind", "latent", "rank", "text", "score"]
    assert table.height == 10 and set(table["unit_kind"]) == {"sae_latent"}
    first = table.filter((table["latent"] == 3) & (table["rank"] == 0))
    assert first["text"][0] == "t17" and abs(first["score"][0] - 1) < 1e-5
    scores = table.filter(table["latent"] == 5)["score"].to_list()
    assert scores == sorted(scores, reverse=True)
    # at the last block the direction is the latent's centred decoder row through gamma and proj
    sae2 = make_sae(tiny, "resid_post:-1")
    d = joint_directions(tiny, sae2)
    W = sae2.W_dec.detach()
    torch.testing.assert_close(d[2], ((W[2] - W[2].mean()) * tiny.visual.ln_post.weight) @ tiny.visual.proj)


def test_top_images_match_brute_force(tiny, tmp_path):
    images = resolve_image_set("toy:20", tmp_path)
    sae = make_sae(tiny, "resid_post:1")
    table, idx, emb = top_images(tiny, sae, images, UnitsConfig(n_images=3, batch_size=7))
    xs = torch.stack([tiny.preprocess(images.load(i)) for i in range(len(images))])
    codes = sae.encode(site_activations(tiny, xs, parse_site("resid_post:1", tiny.num_layers)))
    for latent in range(sae.n_latents):
        fired = int((codes[:, latent] > 0).sum())
        want = codes[:, latent].topk(3).indices[: min(3, fired)].tolist()
        assert idx[latent][: len(want)].tolist() == want and (idx[latent][len(want):] == -1).all()
    assert table.height == int((idx >= 0).sum())
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(len(images)))
