"""Soft-pruned image encoding: heads' outputs zeroed (or mean-replaced) at every token, bias kept.

``encode_image_head_sets`` evaluates S head sets in one pass: the residual stream below the first pruned
layer is computed once per image and shared, then the batch is repeated per distinct set with per-sample
head masks (identical sets are computed once).

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

import torch

from ccs_dist.models import forward
from ccs_dist.models.forward import Ablation
from ccs_dist.core.heads import parse_heads
from ccs_dist.models.loading import LoadedModel

HeadSet = Sequence[str] | Sequence[tuple[int, int]] | str


def keep_masks(loaded: LoadedModel, head_sets: Sequence[HeadSet]) -> torch.Tensor:
    """[S, L, H] float masks: 1 keeps a head, 0 ablates it."""
    masks = torch.ones(len(head_sets), loaded.num_layers, loaded.num_heads)
    for s, heads in enumerate(head_sets):
        for layer, head in parse_heads(heads, loaded.num_layers, loaded.num_heads):
            masks[s, layer, head] = 0.0
    return masks


@torch.no_grad()
def encode_image_masked(loaded: LoadedModel, images: torch.Tensor, keep_BLH: torch.Tensor, ablation: Ablation = "zero") -> torch.Tensor:
    """Image embeddings [B, E] with a per-sample head mask ``keep_BLH`` (1 keep, 0 ablate)."""
    if keep_BLH.shape != (images.shape[0], loaded.num_layers, loaded.num_heads):
        raise ValueError(f"mask shape {tuple(keep_BLH.shape)} != [B, L, H] = [{images.shape[0]}, {loaded.num_layers}, {loaded.num_heads}]")
    return forward.encode_image(loaded, images, keep_BLH.to(loaded.device), ablation)


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
    masks_SLH = keep_masks(loaded, head_sets).to(loaded.device)
    unique_ULH, inverse_S = torch.unique(masks_SLH, dim=0, return_inverse=True)
    B, L = images.shape[0], loaded.num_layers
    if loaded.tower is not None:  # the tower's own forward per distinct set (no shared prefix)
        return _head_sets_tower(loaded, images.to(loaded.device), unique_ULH, inverse_S, ablation, max_batch)
    forward.check_tower(loaded)
    pruned_layers = (unique_ULH < 1).any(dim=(0, 2)).nonzero()
    first = min(int(pruned_layers.min()) if len(pruned_layers) else L - 1, L - 1)
    U = unique_ULH.shape[0]
    per_chunk = max(1, (max_batch or 8 * B) // B)
    with loaded.autocast():
        shared_BPD = forward.run_blocks(loaded, forward.embed(loaded, images), range(first))
        outs = []
        for lo in range(0, U, per_chunk):
            chunk_ULH = unique_ULH[lo : lo + per_chunk]
            n = chunk_ULH.shape[0]
            keep_BLH = chunk_ULH.repeat_interleave(B, dim=0)  # sample u * B + b
            x = forward.run_blocks(loaded, shared_BPD.repeat(n, 1, 1), range(first, L - 1), keep_BLH, ablation)
            x = forward.run_last_block_cls(loaded, x, keep_BLH[:, -1], ablation)
            outs.append(forward.pool_project(loaded, x).view(n, B, -1))
    return torch.cat(outs)[inverse_S]


def encode_image_pruned(
    loaded: LoadedModel, images: torch.Tensor, pruned: HeadSet = (), ablation: Ablation = "zero"
) -> torch.Tensor:
    """Image embeddings [B, E] with the heads ``pruned`` (e.g. ``["L11.H5", "L10.H8"]``) ablated at every token."""
    return encode_image_head_sets(loaded, images, [pruned], ablation=ablation)[0]


@torch.no_grad()
def compute_head_means(
    loaded: LoadedModel, batches: Iterable[torch.Tensor], layers: Sequence[int] | None = None
) -> dict[int, torch.Tensor]:
    """Each head's mean output [H, P, K] over reference images, by layer (nothing is stored on the model)."""
    layers = range(loaded.num_layers) if layers is None else layers
    with contextlib.ExitStack() as stack:
        captures = {layer: stack.enter_context(loaded.heads[layer].controlled(record_mean=True)) for layer in layers}
        for images in batches:
            with loaded.autocast():
                loaded.model.encode_image(images.to(loaded.device))
    return {layer: capture.mean_HPK() for layer, capture in captures.items()}


@contextlib.contextmanager
def reference_means(loaded: LoadedModel, batches: Iterable[torch.Tensor]) -> Iterator[dict[int, torch.Tensor]]:
    """Within the block, ``ablation="mean"`` replaces a head by its mean output over ``batches``; cleared on exit."""
    means = compute_head_means(loaded, batches)
    with contextlib.ExitStack() as stack:
        for layer, mean_HPK in means.items():
            stack.enter_context(loaded.heads[layer].controlled(mean_HPK=mean_HPK))
        yield means


def _head_sets_tower(loaded, images, unique_ULH, inverse_S, ablation, max_batch) -> torch.Tensor:
    B, U = images.shape[0], unique_ULH.shape[0]
    per_chunk = max(1, (max_batch or 8 * B) // B)
    outs = []
    for lo in range(0, U, per_chunk):
        chunk_ULH = unique_ULH[lo : lo + per_chunk]
        n = chunk_ULH.shape[0]
        emb = forward.encode_image_tower(loaded, images.repeat(n, 1, 1, 1), chunk_ULH.repeat_interleave(B, dim=0), ablation)
        outs.append(emb.view(n, B, -1))
    return torch.cat(outs)[inverse_S]
