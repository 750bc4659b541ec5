"""SAE latents as units: each latent's direct contribution to the image embedding, its descriptions (the pool
texts nearest its joint-space direction, a logit lens) and its top-activating images.

A latent writes ``a_k d_k`` at its site (``d_k`` its unit decoder row). Carried into the joint space as the
decomposition carries a head's write (:mod:`ccs_dist.decomposition.kernel`): through ``ln_post`` linearised at
the image's own std ``sigma`` and through ``proj``; a write's share of the mean is its own mean, so
``c_k = a_k ((d_k - mean(d_k)) * gamma / sigma) @ proj`` and the latents plus the rest (reconstruction error,
``b_dec``, ``beta``) sum exactly to the embedding. At ``embedding`` the carry is the identity. At an earlier
block it is the direct path (the residual stream's skip connections) with the final residual's ``sigma``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from ccs_dist.data.images import ImageSet
from ccs_dist.decomposition.loader import model_batches
from ccs_dist.models.loading import LoadedModel
from ccs_dist.sae.model import TopKSAE
from ccs_dist.sae.sites import ln_post_project, parse_site, resid_sigma, run_site

UNIT_KIND = "sae_latent"
DESCRIPTIONS_SCHEMA = {"model": pl.Utf8, "unit_kind": pl.Utf8, "latent": pl.Int64, "rank": pl.Int64, "text": pl.Utf8, "score": pl.Float64}
IMAGES_SCHEMA = {"model": pl.Utf8, "unit_kind": pl.Utf8, "latent": pl.Int64, "rank": pl.Int64, "image": pl.Utf8,
                 "index": pl.Int64, "activation": pl.Float64}


@dataclass(frozen=True)
class UnitsConfig:
    n_descriptions: int = 5
    n_images: int = 5
    batch_size: int = 64
    workers: int = 0


def joint_directions(loaded: LoadedModel, sae: TopKSAE) -> torch.Tensor:
    """Each latent's joint-space direction per unit activation, before the per-image ``1 / sigma``: [n_latents, E]."""
    site = parse_site(sae.site, loaded.num_layers)
    W = sae.W_dec.detach().float()
    if site.kind == "embedding":
        return W
    ln, visual = loaded.visual.ln_post, loaded.visual
    W = W - W.mean(1, keepdim=True)
    if ln.weight is not None:
        W = W * ln.weight.float()
    return W @ visual.proj.float()


@dataclass(frozen=True)
class Carried:
    """One batch. ``codes``: [B, n_latents] activations; ``indices`` / ``values``: [B, k] the active latents;
    ``contributions``: [B, k, E] their carried terms; ``rest_BE``: everything else; ``embedding_BE``: the output.
    ``contributions.sum(1) + rest_BE == embedding_BE`` (exactly at ``embedding`` and the last block)."""

    codes: torch.Tensor
    indices: torch.Tensor
    values: torch.Tensor
    contributions: torch.Tensor
    rest_BE: torch.Tensor
    embedding_BE: torch.Tensor
    scale_B1: torch.Tensor  # 1 / sigma of the final residual (ones at ``embedding``)


@torch.no_grad()
def carry(loaded: LoadedModel, sae: TopKSAE, images: torch.Tensor) -> Carried:
    site = parse_site(sae.site, loaded.num_layers)
    run = run_site(loaded, images.to(loaded.device), site)
    x_BD = run.site_BD
    codes = sae.encode(x_BD)
    top = codes.topk(sae.k, dim=-1)
    dirs = joint_directions(loaded, sae)
    if site.kind == "embedding":
        scale_B1 = torch.ones(x_BD.shape[0], 1, device=x_BD.device)
    else:
        scale_B1 = 1.0 / resid_sigma(loaded, run.final_BD)
    contrib = top.values[..., None] * dirs[top.indices] * scale_B1[..., None]
    emb = run.embedding_BE
    if site.is_last(loaded):  # the rest carried on its own: error + b_dec through the same map (with beta)
        rest_BE = ln_post_project(loaded, x_BD - codes @ sae.W_dec, 1.0 / scale_B1)
    elif site.kind == "embedding":
        rest_BE = x_BD - codes @ sae.W_dec
    else:
        rest_BE = emb - contrib.sum(1)
    return Carried(codes, top.indices, top.values, contrib, rest_BE, emb, scale_B1)


def describe_latents(
    loaded: LoadedModel, sae: TopKSAE, text_TE: np.ndarray | torch.Tensor, texts: Sequence[str],
    latents: Sequence[int] | None = None, config: UnitsConfig = UnitsConfig(), chunk: int = 4096,
) -> pl.DataFrame:
    """Spans-like table: one row per (latent, rank) with the pool text nearest (cosine) the latent's direction."""
    text = F.normalize(torch.as_tensor(np.asarray(text_TE), dtype=torch.float32, device=loaded.device), dim=-1)
    ids = torch.arange(sae.n_latents) if latents is None else torch.as_tensor(list(latents), dtype=torch.long)
    dirs = F.normalize(joint_directions(loaded, sae), dim=-1)
    n = min(config.n_descriptions, len(texts))
    rows = []
    for lo in range(0, len(ids), chunk):
        part = ids[lo : lo + chunk]
        top = (dirs[part.to(dirs.device)] @ text.T).topk(n, dim=-1)
        for latent, vals, idx in zip(part.tolist(), top.values.cpu().tolist(), top.indices.cpu().tolist()):
            rows += [(loaded.key, UNIT_KIND, latent, r, texts[i], float(v)) for r, (v, i) in enumerate(zip(vals, idx))]
    return pl.DataFrame(rows, schema=DESCRIPTIONS_SCHEMA, orient="row")


@torch.no_grad()
def top_images(loaded: LoadedModel, sae: TopKSAE, image_set: ImageSet, config: UnitsConfig = UnitsConfig()) -> tuple[pl.DataFrame, torch.Tensor, torch.Tensor]:
    """Each latent's ``n_images`` top-activating images of ``image_set``: (table, indices [n_latents, n] of the
    image set (-1 where a latent fired on fewer), the image embeddings [N, E] (unit norm, for clarity))."""
    n = min(config.n_images, len(image_set))
    best_v = torch.full((sae.n_latents, n), -1.0, device=loaded.device)
    best_i = torch.full((sae.n_latents, n), -1, dtype=torch.long, device=loaded.device)
    emb = torch.zeros(len(image_set), loaded.embed_dim, device=loaded.device)
    site = parse_site(sae.site, loaded.num_layers)
    for mb in model_batches(image_set, loaded.preprocess, [(0, range(len(image_set)))], config.batch_size, config.workers, loaded.device):
        if mb.images_B3WW is None:
            continue
        run = run_site(loaded, mb.images_B3WW, site)
        codes = sae.encode(run.site_BD)
        idx = torch.as_tensor(mb.indices, device=loaded.device)
        emb[idx] = F.normalize(run.embedding_BE, dim=-1)
        v = torch.cat([best_v, codes.T], dim=1)
        i = torch.cat([best_i, idx[None].expand(sae.n_latents, -1)], dim=1)
        top = v.topk(n, dim=1)
        best_v, best_i = top.values, i.gather(1, top.indices)
    best_i = torch.where(best_v > 0, best_i, -1)
    rows = [(loaded.key, UNIT_KIND, latent, r, image_set.image_id(i), i, float(v))
            for latent, (vs, is_) in enumerate(zip(best_v.cpu().tolist(), best_i.cpu().tolist()))
            for r, (v, i) in enumerate(zip(vs, is_)) if i >= 0]
    return pl.DataFrame(rows, schema=IMAGES_SCHEMA, orient="row"), best_i.cpu(), emb.cpu()
