"""ccs_dist: the Concept Consistency Score of CLIP attention heads, decomposed, scored and pruned at scale.

The flat public API (imported lazily so ``import ccs_dist`` stays cheap)::

    load_model(arch, pretrained=None, device=None)        -> LoadedModel
    decompose(model, images, layers=4)                     -> Decomposition (heads [B, L, H, E], rest, embedding)
    decompose_image_set(model, image_set, store, config)   -> DecompositionArtifact (sharded, cached)
    textspan(head_out, text_emb, texts, m=5, rank=80)      -> SpanResult
    textspan_heads(moments, text_emb, texts, m, rank)      -> list[SpanResult]
    encode_image_pruned(model, images, pruned, ablation)   -> image embeddings [B, E]
    encode_image_head_sets(model, images, head_sets)       -> image embeddings [S, B, E]
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "ccs_dist.models.loading",
    "LoadedModel": "ccs_dist.models.loading",
    "decompose": "ccs_dist.decomposition.kernel",
    "Decomposition": "ccs_dist.decomposition.kernel",
    "decompose_image_set": "ccs_dist.decomposition.image_set",
    "DecomposeConfig": "ccs_dist.decomposition.config",
    "textspan": "ccs_dist.spans.textspan",
    "textspan_heads": "ccs_dist.spans.textspan",
    "SpanResult": "ccs_dist.spans.textspan",
    "encode_image_pruned": "ccs_dist.models.masked",
    "encode_image_head_sets": "ccs_dist.models.masked",
    "encode_image_masked": "ccs_dist.models.masked",
    "UserError": "ccs_dist.core.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'ccs_dist' has no attribute {name!r}")
