"""Intervention specificity: does soft-pruning a head hurt the task its label names more than the others?

Every labelled head is pruned alone on the card's classification tasks, two ways: ``whole`` (the head's
output zeroed inside the network: the evaluation's own masked engine) and ``direct`` (only its direct
contribution ``c_h`` removed from the image embedding, everything it feeds downstream kept: see
:func:`direct_path_encoder`). With ``drop_t = top1(original) - top1(head pruned)`` on task ``t``, a head's
specificity is the mean drop on the tasks its label names minus the mean drop on the other tasks; a task is
named by a label when they share a concept family (:func:`ccs_dist.ccs.head_sets.label_families`, the task's
name read as words: ``toy-colour`` -> colour). Null: the mean specificity, for the same tasks, of the other
heads of the head's layer (random heads of the same layer, every one of them). A label naming no task, or
every task, has no specificity (no row).

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ccs_dist.ccs.head_sets import label_families
from ccs_dist.core.heads import parse_head_name
from ccs_dist.decomposition.kernel import decompose


def direct_path_encoder(loaded, images_B3WW: torch.Tensor, head_sets: Sequence[Sequence[str]]) -> torch.Tensor:
    """[S, B, E] image embeddings with each set's heads' direct terms subtracted (a :data:`HeadSetEncoder`)."""
    dec = decompose(loaded, images_B3WW, layers=loaded.num_layers)
    heads_BLHE, emb_BE = dec.heads.float(), dec.embedding.float()
    first = loaded.num_layers - heads_BLHE.shape[1]
    out = []
    for names in head_sets:
        removed_BE = torch.zeros_like(emb_BE)
        for layer, head in (parse_head_name(n) for n in names):
            removed_BE += heads_BLHE[:, layer - first, head]
        out.append(emb_BE - removed_BE)
    return torch.stack(out)


def task_families(task: str, concept_map: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    return label_families(task.partition("@")[0].replace("-", " ").replace("_", " "), concept_map)


def _specificity(drops: Mapping[str, float], named: set[str]) -> float | None:
    inside = [d for t, d in drops.items() if t in named]
    outside = [d for t, d in drops.items() if t not in named]
    return float(np.mean(inside) - np.mean(outside)) if inside and outside else None


def specificity_scores(top1: Mapping[tuple[str, str], float], heads: Mapping[tuple[int, int], str], tasks: Sequence[str],
                       concept_map: Mapping[str, Sequence[str]]) -> dict[tuple[int, int], tuple[float, float | None, int]]:
    """(layer, head) -> (specificity, null mean over the layer's other heads, tasks) from ``top1[(task, condition)]``
    (condition ``original`` or a head's name ``L{l}.H{h}``); ``heads`` maps every pruned head to its label."""
    families = {t: set(task_families(t, concept_map)) for t in tasks}
    drops = {key: {t: top1[(t, "original")] - top1[(t, f"L{key[0]}.H{key[1]}")] for t in tasks} for key in heads}
    out = {}
    for (layer, head), label in heads.items():
        mine = set(label_families(label, concept_map))
        named = {t for t in tasks if families[t] & mine}
        value = _specificity(drops[(layer, head)], named)
        if value is None:
            continue
        others = [_specificity(drops[k], named) for k in heads if k[0] == layer and k != (layer, head)]
        others = [o for o in others if o is not None]
        out[(layer, head)] = (value, float(np.mean(others)) if others else None, len(tasks))
    return out
