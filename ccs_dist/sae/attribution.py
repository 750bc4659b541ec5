"""How much each SAE latent drives a zero-shot prediction, with the conventions of :mod:`ccs_dist.attribution.maths`.

Target ``y = cos(image embedding, class text embedding)``. Scores per (image, latent), all zero (or, for the logit
lens, ignored) on latents that are not active in the image:

* **act x grad**: ``R_k = a_k dy/da_k``, the site's activation rebuilt as ``x - a.W_dec + a'.W_dec`` with ``a'`` a
  leaf equal to the codes (one backward pass); the first-order estimate of pruning latent k (reconstruction error kept).
* **logit lens**: ``cos(e_k, t)``, the latent's joint-space direction against the text (no activation).
* **act x logit lens**: the direct effect ``c_k . t_hat / ||e||`` of the latent's carried contribution.
* **energy**: ``a_k`` (``||d_k|| = 1``). **random**: a seeded order of the active latents.

Deletion curves prune each image's top-1..k latents of a ranking (:mod:`ccs_dist.sae.prune`) and track ``y``.
Alignment ``cos(e_k, t) - cos(e_k, t_"")`` and clarity (mean pairwise cosine of a latent's top images) follow
Dreyer et al. 2025.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ccs_dist.models.loading import LoadedModel
from ccs_dist.models.similarity import target_score, text_rows_BE
from ccs_dist.sae.model import TopKSAE
from ccs_dist.sae.prune import pruned_edit
from ccs_dist.sae.sites import parse_site, run_site
from ccs_dist.sae.units import carry, joint_directions

RANKINGS = ("act_x_grad", "logit_lens", "act_x_logit_lens", "energy", "random")


@dataclass(frozen=True)
class LatentScores:
    """One batch: ``y_B`` the unpruned target, ``codes`` [B, n_latents], ``scores[name]`` [B, n_latents] per ranking."""

    y_B: torch.Tensor
    codes: torch.Tensor
    scores: dict[str, torch.Tensor]


def act_x_grad(loaded: LoadedModel, sae: TopKSAE, images: torch.Tensor, text) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (y [B], codes [B, n_latents], R = a * dy/da [B, n_latents]) from one forward and one backward pass."""
    images = images.to(loaded.device)
    text_BE = text_rows_BE(loaded, text, images.shape[0])
    site = parse_site(sae.site, loaded.num_layers)
    leaf = {}

    def edit(x_BD):
        codes = sae.encode(x_BD).detach()
        a = leaf.setdefault("a", codes.clone().requires_grad_(True))
        return x_BD - codes @ sae.W_dec.detach() + a @ sae.W_dec.detach()

    with torch.enable_grad():
        emb = run_site(loaded, images, site, edit).embedding_BE
        y_B = target_score(emb, text_BE)
        (grad,) = torch.autograd.grad(y_B.sum(), [leaf["a"]])  # samples are independent: d(sum y)/d a[b] = dy_b/d a[b]
    a = leaf["a"].detach()
    return y_B.detach(), a, a * grad


def score_latents(loaded: LoadedModel, sae: TopKSAE, images: torch.Tensor, text, seed: int = 0, offset: int = 0) -> LatentScores:
    """Every ranking's scores of one batch (see the module docstring); ``offset`` numbers the images for ``random``."""
    y_B, codes, R = act_x_grad(loaded, sae, images, text)
    B = codes.shape[0]
    text_BE = F.normalize(text_rows_BE(loaded, text, B), dim=-1)
    c = carry(loaded, sae, images)
    direct = torch.zeros_like(codes).scatter(1, c.indices, torch.einsum("bke,be->bk", c.contributions, text_BE)
                                             / c.embedding_BE.norm(dim=-1, keepdim=True))
    lens = F.normalize(joint_directions(loaded, sae), dim=-1) @ text_BE.T  # [n_latents, B]
    rand = torch.stack([torch.rand(sae.n_latents, generator=torch.Generator().manual_seed(int(seed) * 1_000_003 + offset + b))
                        for b in range(B)]).to(codes.device)
    return LatentScores(y_B, codes, {"act_x_grad": R, "logit_lens": lens.T.contiguous(), "act_x_logit_lens": direct,
                                     "energy": codes.clone(), "random": rand})


def order_active(score: torch.Tensor, codes: torch.Tensor, k: int) -> torch.Tensor:
    """Each image's active latents by score, highest first: [B, k] latent ids (-1 past the image's active count)."""
    masked = score.float().masked_fill(codes <= 0, float("-inf"))
    top = torch.sort(-masked, dim=1, stable=True)  # ties by latent id: deterministic
    order = top.indices[:, :k]
    return torch.where(torch.isfinite(-top.values[:, :k]), order, -1)


@torch.no_grad()
def deletion_curves(
    loaded: LoadedModel, sae: TopKSAE, images: torch.Tensor, text, order: torch.Tensor, ks: Sequence[int] = range(6),
    freeze_ln: bool = False, max_batch: int | None = None,
) -> torch.Tensor:
    """``y`` after pruning each image's first ``k`` latents of ``order`` ([B, >= max(ks)], -1 = none), per k: [B, J]."""
    images = images.to(loaded.device)
    B, ks = images.shape[0], [int(k) for k in ks]
    text_BE = text_rows_BE(loaded, text, B)
    order = torch.as_tensor(order, dtype=torch.long, device=loaded.device)
    drops = []
    for k in ks:
        d = torch.zeros(B, sae.n_latents + 1, device=loaded.device)  # column n: the sink of the -1 entries
        if k:
            d.scatter_(1, order[:, :k].masked_fill(order[:, :k] < 0, sae.n_latents), 1.0)
        drops.append(d[:, :-1])
    drop_Z = torch.cat(drops)
    images_Z, text_Z = images.repeat(len(ks), 1, 1, 1), text_BE.repeat(len(ks), 1)
    site = parse_site(sae.site, loaded.num_layers)
    step = max(1, max_batch or 8 * B)
    ys = [target_score(run_site(loaded, images_Z[lo : lo + step], site, pruned_edit(sae, drop_Z[lo : lo + step]),
                                freeze_ln=freeze_ln).embedding_BE, text_Z[lo : lo + step])
          for lo in range(0, drop_Z.shape[0], step)]
    return torch.cat(ys).view(len(ks), B).T.contiguous()


def alignment(loaded: LoadedModel, sae: TopKSAE, text_CE, empty_E) -> torch.Tensor:
    """``cos(e_k, t_c) - cos(e_k, t_"")`` per latent and text: [n_latents, C]."""
    e = F.normalize(joint_directions(loaded, sae), dim=-1)
    t = F.normalize(torch.as_tensor(np.asarray(text_CE), dtype=torch.float32, device=e.device), dim=-1)
    t0 = F.normalize(torch.as_tensor(np.asarray(empty_E), dtype=torch.float32, device=e.device), dim=-1)
    return e @ t.T - (e @ t0)[:, None]


def clarity(top_indices: torch.Tensor, embeddings_NE: torch.Tensor) -> torch.Tensor:
    """Mean pairwise cosine of each latent's top images (``top_indices`` [n_latents, m], -1 = none): [n_latents],
    NaN where fewer than two images."""
    emb = F.normalize(torch.as_tensor(embeddings_NE).float(), dim=-1)
    idx = torch.as_tensor(top_indices, dtype=torch.long)
    ok = idx >= 0
    v = emb[idx.clamp_min(0)] * ok[..., None]  # [n_latents, m, E]
    gram = v @ v.transpose(1, 2)
    n = ok.sum(1).float()
    off = gram.sum((1, 2)) - (gram.diagonal(dim1=1, dim2=2)).sum(1)
    return torch.where(n >= 2, off / (n * (n - 1)).clamp_min(1), torch.full_like(n, float("nan")))
