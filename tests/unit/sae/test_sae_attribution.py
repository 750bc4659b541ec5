"""SAE latent attribution on ccs-tiny at random init: act x grad vs finite differences, rankings, deletion curves,
alignment and clarity."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ccs_dist.attribution.maths import target_score
from ccs_dist.models import forward
from ccs_dist.sae import attribution as SA
from ccs_dist.sae.prune import encode_image_pruned_latents
from ccs_dist.sae.sites import parse_site, run_site
from ccs_dist.sae.units import carry
from tests.support.sae import make_sae


@pytest.fixture(scope="module")
def batch(tiny):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    t = F.normalize(torch.randn(3, tiny.embed_dim, generator=torch.Generator().manual_seed(2)), dim=-1)
    return x, t


def y_gated(loaded, sae, x, t, gates):
    """y with each latent's write scaled by a gate (1 = unchanged), through the real tower."""
    def edit(r):
        codes = sae.encode(r)
        return r + (codes * (gates - 1)) @ sae.W_dec
    with torch.no_grad():
        return target_score(run_site(loaded, x, parse_site(sae.site, loaded.num_layers), edit).embedding_BE, t)


@pytest.mark.parametrize("site", ["resid_post:-1", "resid_post:0", "embedding"])
def test_act_x_grad_equals_central_finite_difference(tiny, batch, site):
    x, t = batch
    sae = make_sae(tiny, site)
    y, codes, R = SA.act_x_grad(tiny, sae, x, t)
    torch.testing.assert_close(y, target_score(forward.encode_image(tiny, x), t), atol=1e-5, rtol=0)
    assert (R[codes <= 0] == 0).all() and R.abs().max() > 1e-4
    eps = 1e-2
    active = codes.topk(sae.k, dim=-1).indices
    for j in range(sae.k):
        up, down = torch.ones_like(codes), torch.ones_like(codes)
        rows = torch.arange(3)
        up[rows, active[:, j]] += eps
        down[rows, active[:, j]] -= eps
        fd = (y_gated(tiny, sae, x, t, up) - y_gated(tiny, sae, x, t, down)) / (2 * eps)
        torch.testing.assert_close(R[rows, active[:, j]], fd, atol=5e-5, rtol=0)
    # the null: the gradient without the activation factor is not R
    grad = R / codes.clamp_min(1e-12)
    assert (grad[rows, active[:, 0]] - R[rows, active[:, 0]]).abs().max() > 1e-5


def test_rankings_and_direct_effects_sum_to_y(tiny, batch):
    x, t = batch
    sae = make_sae(tiny, "resid_post:-1")
    s = SA.score_latents(tiny, sae, x, t)
    assert set(s.scores) == set(SA.RANKINGS) and all(v.shape == s.codes.shape for v in s.scores.values())
    c = carry(tiny, sae, x)
    rest = (c.rest_BE * t).sum(-1) / c.embedding_BE.norm(dim=-1)
    torch.testing.assert_close(s.scores["act_x_logit_lens"].sum(1) + rest, s.y_B, atol=1e-5, rtol=0)
    torch.testing.assert_close(s.scores["energy"], s.codes)
    order = SA.order_active(s.scores["act_x_grad"], s.codes, 5)
    got = s.scores["act_x_grad"].gather(1, order.clamp_min(0))
    assert (got[:, :-1] >= got[:, 1:]).all() and (s.codes.gather(1, order) > 0).all()
    again = SA.score_latents(tiny, sae, x, t)
    assert torch.equal(again.scores["random"], s.scores["random"])


def test_deletion_curves(tiny, batch):
    x, t = batch
    sae = make_sae(tiny, "resid_post:-1")
    s = SA.score_latents(tiny, sae, x, t)
    order = SA.order_active(s.scores["act_x_grad"], s.codes, 5)
    curve = SA.deletion_curves(tiny, sae, x, t, order, ks=range(6), max_batch=5)
    assert curve.shape == (3, 6)
    torch.testing.assert_close(curve[:, 0], s.y_B, atol=1e-5, rtol=0)
    drop = torch.zeros_like(s.codes)
    drop.scatter_(1, order[:, :2], 1.0)
    torch.testing.assert_close(curve[:, 2], target_score(encode_image_pruned_latents(tiny, sae, x, drop), t), atol=1e-5, rtol=0)
    # deleting the top act x grad latents lowers y more than deleting the bottom ones (first order: by ~sum R)
    worst = SA.order_active(-s.scores["act_x_grad"], s.codes, 5)
    low = SA.deletion_curves(tiny, sae, x, t, worst, ks=[0, 1])
    assert (curve[:, 1] <= low[:, 1] + 1e-6).all()
    # -1 entries (an image with fewer active latents) prune nothing
    none = SA.deletion_curves(tiny, sae, x, t, torch.full((3, 2), -1), ks=[0, 2])
    torch.testing.assert_close(none[:, 1], none[:, 0], atol=1e-6, rtol=0)


def test_alignment_and_clarity(tiny):
    sae = make_sae(tiny, "embedding")
    t = F.normalize(torch.randn(4, tiny.embed_dim, generator=torch.Generator().manual_seed(3)), dim=-1)
    t0 = F.normalize(torch.randn(tiny.embed_dim, generator=torch.Generator().manual_seed(4)), dim=-0)
    with torch.no_grad():
        sae.W_dec[0] = t[2]
    al = SA.alignment(tiny, sae, t, t0)
    assert al.shape == (sae.n_latents, 4)
    torch.testing.assert_close(al[0, 2], 1 - (t[2] @ t0), atol=1e-5, rtol=0)
    emb = F.normalize(torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    idx = torch.tensor([[0, 1, 2], [3, 3, -1], [4, -1, -1]])
    cl = SA.clarity(idx, emb)
    by_hand = (emb[0] @ emb[1] + emb[0] @ emb[2] + emb[1] @ emb[2]) / 3
    torch.testing.assert_close(cl[0], by_hand)
    torch.testing.assert_close(cl[1], torch.tensor(1.0))
    assert torch.isnan(cl[2])
