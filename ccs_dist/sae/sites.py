"""Where an SAE reads the image tower: ``resid_post:{layer}`` (the CLS residual after block ``layer``) or
``embedding`` (the final image embedding), and the forward pass with an edit of the activation at that site.

The edit sees the site's activation [B, D] (or [B, E]) and returns its replacement; the rest of the tower runs
as :func:`ccs_dist.models.forward.encode_image` does (CLS-only last block). Plain torch throughout, so an
edit that carries gradients gives gradients of the embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ccs_dist.core.errors import UserError
from ccs_dist.decomposition.kernel import check_supported
from ccs_dist.models import forward
from ccs_dist.models.loading import LoadedModel

Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Site:
    kind: str  # "resid_post" or "embedding"
    layer: int | None = None  # 0-based, non-negative, for resid_post

    @property
    def name(self) -> str:
        return "embedding" if self.kind == "embedding" else f"resid_post:{self.layer}"

    def is_last(self, loaded: LoadedModel) -> bool:
        return self.kind == "resid_post" and self.layer == loaded.num_layers - 1


def parse_site(text: str, num_layers: int) -> Site:
    """``resid_post:{layer}`` (negative counts from the last block) or ``embedding``."""
    text = str(text).strip()
    if text == "embedding":
        return Site("embedding")
    kind, sep, layer = text.partition(":")
    if kind == "resid_post" and sep:
        try:
            n = int(layer)
        except ValueError:
            n = None
        if n is not None and -num_layers <= n < num_layers:
            return Site("resid_post", n % num_layers)
    raise UserError(f"unknown SAE site {text!r}: use resid_post:LAYER (0..{num_layers - 1}, or -1 for the last block) or embedding")


def site_width(loaded: LoadedModel, site: Site) -> int:
    return loaded.embed_dim if site.kind == "embedding" else loaded.width


@dataclass(frozen=True)
class SiteRun:
    """One pass: ``site_BD`` the (unedited) activation at the site, ``final_BD`` the (edited) CLS residual
    before ``ln_post`` (None when the pass stopped at the site), ``embedding_BE`` the output (None likewise)."""

    site_BD: torch.Tensor
    final_BD: torch.Tensor | None
    embedding_BE: torch.Tensor | None


def ln_post_project(loaded: LoadedModel, resid_BD: torch.Tensor, sigma_B1: torch.Tensor | None = None) -> torch.Tensor:
    """``ln_post`` then ``proj`` of CLS residuals [B, D] -> [B, E]; ``sigma_B1`` fixes the std (the linearised map
    of :mod:`ccs_dist.decomposition.kernel`, the mean still taken from ``resid_BD``), None = the live LayerNorm."""
    visual = loaded.visual
    if sigma_B1 is None:
        return forward.pool_project(loaded, resid_BD[:, None])
    ln, r = visual.ln_post, resid_BD.float()
    out = (r - r.mean(-1, keepdim=True)) / sigma_B1
    if ln.weight is not None:
        out = out * ln.weight.float()
    if ln.bias is not None:
        out = out + ln.bias.float()
    return out @ visual.proj.float()


def resid_sigma(loaded: LoadedModel, resid_BD: torch.Tensor) -> torch.Tensor:
    """The per-image std ``ln_post`` divides by (eps included): [B, 1]."""
    r = resid_BD.float()
    return (r.var(-1, unbiased=False, keepdim=True) + loaded.visual.ln_post.eps).sqrt()


def run_site(
    loaded: LoadedModel,
    images: torch.Tensor,
    site: Site,
    edit: Edit | None = None,
    *,
    stop_at_site: bool = False,
    freeze_ln: bool = False,
) -> SiteRun:
    """Run the tower with ``edit`` applied to the CLS activation at ``site`` (None: unedited).

    ``freeze_ln``: ``ln_post`` divides by the std of the unedited final residual (so an edit at the last block
    changes the embedding linearly, as the decomposition linearises it); off, the live LayerNorm.
    """
    forward.check_tower(loaded)
    check_supported(loaded)
    L = loaded.num_layers
    with loaded.autocast():
        if site.kind == "embedding":
            x_BPD = forward.run_blocks(loaded, forward.embed(loaded, images), range(L - 1))
            final_BD = forward.run_last_block_cls(loaded, x_BPD)[:, 0].float()
            emb_BE = forward.pool_project(loaded, final_BD[:, None])
            return SiteRun(emb_BE, final_BD, None if stop_at_site else (emb_BE if edit is None else edit(emb_BE)))
        x_BPD = forward.run_blocks(loaded, forward.embed(loaded, images), range(min(site.layer + 1, L - 1)))
        if site.layer < L - 1:
            site_BD = x_BPD[:, 0].float()
            if stop_at_site:
                return SiteRun(site_BD, None, None)
            if edit is not None:
                x_BPD = torch.cat([edit(site_BD).to(x_BPD.dtype)[:, None], x_BPD[:, 1:]], dim=1)
            x_BPD = forward.run_blocks(loaded, x_BPD, range(site.layer + 1, L - 1))
            final_BD = forward.run_last_block_cls(loaded, x_BPD)[:, 0].float()
            return SiteRun(site_BD, final_BD, ln_post_project(loaded, final_BD))
        site_BD = forward.run_last_block_cls(loaded, x_BPD)[:, 0].float()
        if stop_at_site:
            return SiteRun(site_BD, None, None)
        final_BD = site_BD if edit is None else edit(site_BD)
        sigma_B1 = resid_sigma(loaded, site_BD) if freeze_ln else None
        return SiteRun(site_BD, final_BD, ln_post_project(loaded, final_BD, sigma_B1))


@torch.no_grad()
def site_activations(loaded: LoadedModel, images: torch.Tensor, site: Site) -> torch.Tensor:
    """The CLS activation at ``site``: [B, D] (float32)."""
    return run_site(loaded, images.to(loaded.device), site, stop_at_site=True).site_BD
