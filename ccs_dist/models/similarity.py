"""The score that attribution explains: the cosine of an image embedding with a class text embedding.

One home for heads (:mod:`ccs_dist.attribution.maths`) and SAE latents (:mod:`ccs_dist.sae.attribution`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ccs_dist.models.loading import LoadedModel


def target_score(embedding_BE: torch.Tensor, text_BE: torch.Tensor) -> torch.Tensor:
    """``y = cos(image embedding, text embedding)`` per sample: [B] (text rows need not be unit norm)."""
    return (F.normalize(embedding_BE.float(), dim=-1) * F.normalize(text_BE.float(), dim=-1)).sum(-1)


def text_rows_BE(loaded: LoadedModel, text: torch.Tensor | np.ndarray, batch: int) -> torch.Tensor:
    """Text embeddings [B, E] for a batch of ``batch`` images: one row per image, or one [E] row for all."""
    t = torch.as_tensor(text, dtype=torch.float32, device=loaded.device)
    if t.dim() == 1:
        t = t[None].expand(batch, -1)
    if t.shape != (batch, loaded.embed_dim):
        raise ValueError(f"text embeddings have shape {tuple(t.shape)}, expected [{batch}, {loaded.embed_dim}] or [E]")
    return t
