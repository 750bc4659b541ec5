"""Image and text embeddings for evaluation: every head set of a batch in one call to the masked engine.

The text side is never pruned: text embeddings come from ``model.encode_text`` once per model. Image
embeddings for S head sets come from ``ccs_dist.encode_image_head_sets`` (one pass per batch, the residual
stream below the first pruned layer shared), or from any function with the same signature (``encoder``),
e.g. the naive reference :func:`ccs_dist.ccs.head_sets.encode_image_head_sets_naive`.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from ccs_dist.models.masked import encode_image_head_sets
from ccs_dist.text.embed import embed_texts as embed_numpy

HeadSetEncoder = Callable[..., torch.Tensor]  # (loaded, images_B3WW, head_sets) -> [S, B, E]


def default_encoder() -> HeadSetEncoder:
    return encode_image_head_sets


@torch.no_grad()
def embed_images(
    loaded,
    images_B3WW: torch.Tensor,
    head_sets: Sequence[Sequence[str]],
    encoder: HeadSetEncoder | None = None,
    ablation: str = "zero",
) -> torch.Tensor:
    """L2-normalised float32 image embeddings of every head set: [S, B, E]."""
    encoder = encoder or default_encoder()
    images = images_B3WW.to(loaded.device)
    with loaded.autocast():
        if ablation == "zero":
            emb_SBE = encoder(loaded, images, [list(h) for h in head_sets])
        else:
            emb_SBE = encoder(loaded, images, [list(h) for h in head_sets], ablation=ablation)
    if emb_SBE.shape[:2] != (len(head_sets), images.shape[0]):
        raise RuntimeError(f"encoder returned {tuple(emb_SBE.shape)}, expected [{len(head_sets)}, {images.shape[0]}, E]")
    return F.normalize(emb_SBE.float(), dim=-1)


def embed_texts(loaded, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised float32 text embeddings of the unpruned text tower: [T, E]."""

    return torch.from_numpy(embed_numpy(loaded, texts, batch_size=batch_size)).to(loaded.device)


@torch.no_grad()
def prompt_ensemble(loaded, names: Sequence[str], templates: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """One unit vector per name: the mean of its normalised template embeddings, renormalised: [C, E]."""
    texts = [t.replace("{c}", n) for n in names for t in templates]
    emb_TE = embed_texts(loaded, texts, batch_size)
    return F.normalize(emb_TE.view(len(names), len(templates), -1).mean(1), dim=-1)
