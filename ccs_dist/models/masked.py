"""Soft-pruned image encoding: heads' outputs zeroed (or mean-replaced) at every token, bias kept.

``encode_image_head_sets`` evaluates S head sets in one pass: the residual stream below the first pruned
layer is computed once per image and shared, then the batch is repeated per set with per-sample head masks.
Identical sets are computed once.

Axis legend: S head set, B batch, L layer, H head, P position, K head dim, E joint embedding.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Literal

import torch

from ccs_dist.models.heads import parse_heads
from ccs_dist.models.loading import LoadedModel

Ablation = Literal["zero", "mean"]
HeadSet = Sequence[str] | Sequence[tuple[int, int]] | str


def keep_masks(loaded: LoadedModel, head_sets: Sequence[HeadSet]) -> torch.Tensor:
    """[S, L, H] float masks: 1 keeps a head, 0 ablates it."""
    masks = torch.ones(len(head_sets), loaded.num_layers, loaded.num_heads)
    for s, heads in enumerate(head_sets):
        for layer, head in parse_heads(heads, loaded.num_layers, loaded.num_heads):
            masks[s, layer, head] = 0.0
    return masks


@contextlib.contextmanager
def _masked(loaded: LoadedModel, layer: int, keep_BH: torch.Tensor, ablation: Ablation):
    module = loaded.heads[layer]
    if ablation == "mean" and module.mean_out_HPK is None:
        raise ValueError("mean ablation needs reference means: call compute_head_means first")
    module.head_mask_BH, module.ablation = keep_BH, ablation
    try:
        yield
    finally:
        module.head_mask_BH, module.ablation = None, "zero"


def _check_tower(loaded: LoadedModel) -> None:
    visual = loaded.visual
    if not visual.transformer.batch_first or not hasattr(visual, "_embeds") or not hasattr(visual, "_pool"):
        raise TypeError(f"{loaded.key}: masked encoding needs an open_clip 3.x batch-first VisionTransformer")


def _run_blocks(loaded: LoadedModel, x_BPD: torch.Tensor, layers: Iterable[int], keep_BLH: torch.Tensor | None, ablation: Ablation):
    blocks = loaded.visual.transformer.resblocks
    for layer in layers:
        keep_BH = None if keep_BLH is None else keep_BLH[:, layer]
        if keep_BH is None or bool((keep_BH == 1).all()):
            x_BPD = blocks[layer](x_BPD)
        else:
            with _masked(loaded, layer, keep_BH.to(x_BPD.device), ablation):
                x_BPD = blocks[layer](x_BPD)
    return x_BPD


def _finish(loaded: LoadedModel, x_BPD: torch.Tensor) -> torch.Tensor:
    visual = loaded.visual
    pooled, _ = visual._pool(x_BPD)
    return (pooled @ visual.proj if visual.proj is not None else pooled).float()


@torch.no_grad()
def encode_image_masked(loaded: LoadedModel, images: torch.Tensor, keep_BLH: torch.Tensor, ablation: Ablation = "zero") -> torch.Tensor:
    """Image embeddings [B, E] with a per-sample head mask ``keep_BLH`` (1 keep, 0 ablate)."""
    _check_tower(loaded)
    images = images.to(loaded.device)
    if keep_BLH.shape != (images.shape[0], loaded.num_layers, loaded.num_heads):
        raise ValueError(f"mask shape {tuple(keep_BLH.shape)} != [B, L, H] = [{images.shape[0]}, {loaded.num_layers}, {loaded.num_heads}]")
    with loaded.autocast():
        x = loaded.visual._embeds(images)
        x = _run_blocks(loaded, x, range(loaded.num_layers), keep_BLH, ablation)
        return _finish(loaded, x)


@torch.no_grad()
def encode_image_head_sets(
    loaded: LoadedModel,
    images: torch.Tensor,
    head_sets: Sequence[HeadSet],
    ablation: Ablation = "zero",
    max_batch: int | None = None,
) -> torch.Tensor:
    """Embeddings [S, B, E] of ``images`` [B, 3, h, w] with each head set of ``head_sets`` pruned.

    The layers below the first pruned layer run once on B images; above it, the batch is repeated per
    distinct head set (``max_batch`` caps the repeated batch, default 8 * B).
    """
    _check_tower(loaded)
    images = images.to(loaded.device)
    masks_SLH = keep_masks(loaded, head_sets).to(loaded.device)
    unique_ULH, inverse_S = torch.unique(masks_SLH, dim=0, return_inverse=True)
    B, L = images.shape[0], loaded.num_layers
    pruned_layers = (unique_ULH < 1).any(dim=(0, 2)).nonzero()
    first = int(pruned_layers.min()) if len(pruned_layers) else L
    U = unique_ULH.shape[0]
    per_chunk = max(1, (max_batch or 8 * B) // B)
    with loaded.autocast():
        shared_BPD = _run_blocks(loaded, loaded.visual._embeds(images), range(first), None, ablation)
        outs = []
        for lo in range(0, U, per_chunk):
            chunk_ULH = unique_ULH[lo : lo + per_chunk]
            n = chunk_ULH.shape[0]
            x = shared_BPD.repeat(n, 1, 1)  # sample u * B + b
            keep_BLH = chunk_ULH.repeat_interleave(B, dim=0)
            x = _run_blocks(loaded, x, range(first, L), keep_BLH, ablation)
            outs.append(_finish(loaded, x).view(n, B, -1))
    unique_out = torch.cat(outs)
    return unique_out[inverse_S]


def encode_image_pruned(
    loaded: LoadedModel, images: torch.Tensor, pruned: HeadSet = (), ablation: Ablation = "zero"
) -> torch.Tensor:
    """Image embeddings [B, E] with the heads ``pruned`` (e.g. ``["L11.H5", "L10.H8"]``) ablated at every token."""
    return encode_image_head_sets(loaded, images, [pruned], ablation=ablation)[0]


@torch.no_grad()
def compute_head_means(loaded: LoadedModel, batches: Iterable[torch.Tensor], layers: Sequence[int] | None = None) -> None:
    """Record each head's mean output [H, P, K] over reference images, for ``ablation="mean"``."""
    layers = range(loaded.num_layers) if layers is None else layers
    for layer in layers:
        loaded.heads[layer].record_mean = True
    try:
        for images in batches:
            with loaded.autocast():
                loaded.model.encode_image(images.to(loaded.device))
        for layer in layers:
            loaded.heads[layer].mean_out_HPK = loaded.heads[layer].pop_mean()
    finally:
        for layer in layers:
            loaded.heads[layer].record_mean = False
