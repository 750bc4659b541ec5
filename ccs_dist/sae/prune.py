"""Pruning SAE latents: remove chosen latents' writes at the SAE site and keep the reconstruction error, so the
site's activation becomes ``x - sum_{k pruned} a_k d_k`` (no latent pruned: ``x`` itself, the unpruned model).

``freeze_ln`` keeps ``ln_post``'s std at the unpruned value (the decomposition's linearisation): at the last
block, pruning then changes the embedding by exactly minus the latents' carried contributions
(:func:`ccs_dist.sae.units.carry`); with the live LayerNorm the change is that to first order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ccs_dist.models.loading import LoadedModel
from ccs_dist.sae.model import TopKSAE
from ccs_dist.sae.sites import parse_site, run_site


def drop_mask(sae: TopKSAE, batch: int, latents: Sequence[int] | torch.Tensor, device) -> torch.Tensor:
    """[B, n_latents] float mask, 1 where a latent is pruned: the same ``latents`` for every image, or a given [B, n] mask."""
    t = torch.as_tensor(latents, device=device)
    if t.dim() == 2:
        if t.shape != (batch, sae.n_latents):
            raise ValueError(f"drop mask has shape {tuple(t.shape)}, expected [{batch}, {sae.n_latents}]")
        return t.float()
    mask = torch.zeros(batch, sae.n_latents, device=device)
    if t.numel():
        mask[:, t.long()] = 1.0
    return mask


def pruned_edit(sae: TopKSAE, drop: torch.Tensor):
    def edit(x_BD: torch.Tensor) -> torch.Tensor:
        return x_BD - (sae.encode(x_BD) * drop) @ sae.W_dec
    return edit


@torch.no_grad()
def encode_image_pruned_latents(
    loaded: LoadedModel, sae: TopKSAE, images: torch.Tensor, latents: Sequence[int] | torch.Tensor = (), freeze_ln: bool = False,
) -> torch.Tensor:
    """The image embedding [B, E] with ``latents`` (ids for all images, or a [B, n_latents] mask) pruned."""
    images = images.to(loaded.device)
    drop = drop_mask(sae, images.shape[0], latents, loaded.device)
    site = parse_site(sae.site, loaded.num_layers)
    return run_site(loaded, images, site, pruned_edit(sae, drop), freeze_ln=freeze_ln).embedding_BE
