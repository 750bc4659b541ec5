"""Text embeddings from the model's text tower, in batches, cached by content hash.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ccs_dist.models.loading import LoadedModel
from ccs_dist.artifacts.store import ArtifactStore, atomic_save_npy, content_key
from ccs_dist.text.pool import DescriptionPool

log = logging.getLogger(__name__)

EMBED_VERSION = 1


def _trimmable(model: torch.nn.Module) -> bool:
    import open_clip

    return (
        type(model) is open_clip.CLIP
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", "argmax") in ("argmax", "eos")
        and getattr(model.transformer, "batch_first", False)
    )


@torch.no_grad()
def encode_text_trimmed(model: torch.nn.Module, tokens_TP: torch.Tensor) -> torch.Tensor:
    """``model.encode_text`` without the trailing padding: [T, E], equal to the full-context result.

    Under the causal mask no position attends to a later one, so the padding after the longest text's
    end-of-text token cannot change the pooled token; dropping it makes short descriptions ~5x cheaper.
    """
    if not _trimmable(model):
        return model.encode_text(tokens_TP)
    from open_clip.transformer import text_global_pool

    nonzero = (tokens_TP != 0).int()
    n = int((nonzero * torch.arange(1, tokens_TP.shape[1] + 1, device=tokens_TP.device)).amax()) or 1
    tokens = tokens_TP[:, :n]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:n].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:n, :n])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return x


@torch.no_grad()
def embed_texts(loaded: LoadedModel, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """L2-normalised text embeddings [T, E] (float32) from ``loaded``'s text tower."""
    from tqdm.auto import tqdm

    out = []
    for lo in tqdm(range(0, len(texts), batch_size), desc="embed texts", unit="batch", disable=not progress):
        tokens = loaded.tokenizer(list(texts[lo : lo + batch_size])).to(loaded.device)
        with loaded.autocast():
            emb = encode_text_trimmed(loaded.model, tokens).float()
        out.append(torch.nn.functional.normalize(emb, dim=-1).cpu().numpy())
    if not out:
        return np.zeros((0, loaded.embed_dim), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def embed_pool(
    loaded: LoadedModel, pool: DescriptionPool, store: ArtifactStore, batch_size: int = 256, progress: bool = True
) -> np.ndarray:
    """Embeddings [T, E] of a description pool, read from the cache when this (weights, pool) was done before."""
    key = content_key(
        {"version": EMBED_VERSION, "model": loaded.key, "weights": loaded.weights_hash, "pool": pool.content_hash,
         "precision": loaded.precision}
    )
    path = store.find_file("text_embeddings", key, ".npy")
    if path is not None:
        emb = np.load(path)
        if emb.shape == (len(pool), loaded.embed_dim):
            log.info("text embeddings of %s reused from %s", pool.source, path)
            return emb
    emb = embed_texts(loaded, pool.texts, batch_size=batch_size, progress=progress)
    atomic_save_npy(store.file_path("text_embeddings", key, ".npy"), emb)
    store.publish_file("text_embeddings", key, ".npy")
    log.info("embedded %d descriptions of %s with %s", len(pool), pool.source, loaded.key)
    return emb
