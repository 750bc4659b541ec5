"""The image tower's forward pass in pieces, so callers can share a prefix, mask heads per sample and skip work.

The pooled embedding of a class-token ViT depends on the last block only through the CLS token: the last
block's query, out-projection, MLP and ``ln_post`` are row-wise, so computing them for CLS alone (keys and
values still from every token) gives the same embedding for ~1/L less work.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Literal

import torch
from open_clip.transformer import ResidualAttentionBlock

from ccs_dist.models.loading import LoadedModel

Ablation = Literal["zero", "mean"]


def check_tower(loaded: LoadedModel) -> None:
    visual = loaded.visual
    if not visual.transformer.batch_first or not hasattr(visual, "_embeds") or not hasattr(visual, "_pool"):
        raise TypeError(f"{loaded.key}: needs an open_clip 3.x batch-first VisionTransformer")


@contextlib.contextmanager
def head_mask(loaded: LoadedModel, layer: int, keep_BH: torch.Tensor | None, ablation: Ablation = "zero"):
    """Within the block, ablate the heads of ``layer`` where ``keep_BH`` is 0 (None: no mask)."""
    module = loaded.heads[layer]
    if keep_BH is None or bool((keep_BH == 1).all()):
        yield
        return
    if ablation == "mean" and module.control.mean_HPK is None:
        raise ValueError("mean ablation needs reference means: run it within masked.reference_means")
    with module.controlled(keep_BH=keep_BH, ablation=ablation):
        yield


def embed(loaded: LoadedModel, images: torch.Tensor) -> torch.Tensor:
    """Patch + class embeddings after ``ln_pre``: [B, P, D]."""
    return loaded.visual._embeds(images.to(loaded.device))


def run_blocks(
    loaded: LoadedModel,
    x_BPD: torch.Tensor,
    layers: Iterable[int],
    keep_BLH: torch.Tensor | None = None,
    ablation: Ablation = "zero",
) -> torch.Tensor:
    blocks = loaded.visual.transformer.resblocks
    for layer in layers:
        with head_mask(loaded, layer, None if keep_BLH is None else keep_BLH[:, layer], ablation):
            x_BPD = blocks[layer](x_BPD)
    return x_BPD


def _cls_only_ok(loaded: LoadedModel) -> bool:
    visual = loaded.visual
    block = visual.transformer.resblocks[-1]
    return (
        type(block) is ResidualAttentionBlock
        and not hasattr(block, "ln_1_kv")
        and getattr(visual, "attn_pool", None) is None
        and getattr(visual, "pool_type", None) == "tok"
        and not visual.transformer.grad_checkpointing
    )


def run_last_block_cls(
    loaded: LoadedModel, x_BPD: torch.Tensor, keep_BH: torch.Tensor | None = None, ablation: Ablation = "zero"
) -> torch.Tensor:
    """The last block for the CLS token only: [B, 1, D] (falls back to the full block where unsupported)."""
    layer = loaded.num_layers - 1
    block = loaded.visual.transformer.resblocks[layer]
    if not _cls_only_ok(loaded):
        with head_mask(loaded, layer, keep_BH, ablation):
            return block(x_BPD)[:, :1]
    h_BPD = block.ln_1(x_BPD)
    with head_mask(loaded, layer, keep_BH, ablation):
        attn_B1D = block.attn(h_BPD[:, :1], h_BPD, h_BPD, need_weights=False)[0]
    x_B1D = x_BPD[:, :1] + block.ls_1(attn_B1D)
    return x_B1D + block.ls_2(block.mlp(block.ln_2(x_B1D)))


def pool_project(loaded: LoadedModel, x_BPD: torch.Tensor) -> torch.Tensor:
    """``ln_post``, pooling and projection: [B, E] (float32)."""
    visual = loaded.visual
    pooled, _ = visual._pool(x_BPD)
    return (pooled @ visual.proj if visual.proj is not None else pooled).float()


def encode_image(
    loaded: LoadedModel, images: torch.Tensor, keep_BLH: torch.Tensor | None = None, ablation: Ablation = "zero"
) -> torch.Tensor:
    """``encode_image`` (unnormalised, [B, E]) with an optional per-sample head mask, CLS-only last block."""
    if loaded.tower is not None:
        return encode_image_tower(loaded, images, keep_BLH, ablation)
    check_tower(loaded)
    with loaded.autocast():
        x = embed(loaded, images)
        x = run_blocks(loaded, x, range(loaded.num_layers - 1), keep_BLH, ablation)
        x = run_last_block_cls(loaded, x, None if keep_BLH is None else keep_BLH[:, -1], ablation)
        return pool_project(loaded, x)


def encode_image_tower(
    loaded: LoadedModel, images: torch.Tensor, keep_BLH: torch.Tensor | None = None, ablation: Ablation = "zero"
) -> torch.Tensor:
    """``encode_image`` of a :class:`~ccs_dist.models.towers.Tower` model (timm, Hugging Face): the tower's own
    forward, each masked layer's heads ablated at its out-projection input (= zeroing those weight columns)."""
    with contextlib.ExitStack() as stack, loaded.autocast():
        for layer in range(loaded.num_layers):
            stack.enter_context(head_mask(loaded, layer, None if keep_BLH is None else keep_BLH[:, layer], ablation))
        return loaded.model.encode_image(images.to(loaded.device)).float()
