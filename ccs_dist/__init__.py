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
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "ccs_dist.models.loading",
    "LoadedModel": "ccs_dist.models.loading",
    "decompose": "ccs_dist.decompose",
    "Decomposition": "ccs_dist.decompose",
    "decompose_image_set": "ccs_dist.decompose",
    "DecomposeConfig": "ccs_dist.decompose",
    "textspan": "ccs_dist.textspan",
    "textspan_heads": "ccs_dist.textspan",
    "SpanResult": "ccs_dist.textspan",
    "encode_image_pruned": "ccs_dist.models.masked",
    "encode_image_head_sets": "ccs_dist.models.masked",
    "encode_image_masked": "ccs_dist.models.masked",
    "UserError": "ccs_dist.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'ccs_dist' has no attribute {name!r}")


class _FlatAPIModule(types.ModuleType):
    """The package module: the flat API's names stay functions once the same-named submodules are imported.

    Importing ``ccs_dist.textspan`` or ``ccs_dist.decompose`` makes the import system bind the submodule as
    an attribute of the package, which would shadow the functions of the same name. Those bindings are
    dropped here; the submodules stay reachable as ``sys.modules["ccs_dist.textspan"]`` and through
    ``from ccs_dist.textspan import ...``.
    """

    def __setattr__(self, name: str, value) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _FlatAPIModule
