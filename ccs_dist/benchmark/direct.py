"""Ground truth 2, direct-path ablation: a head set's direct terms removed from each task image's embedding.

For a batch, :func:`ccs_dist.decomposition.kernel.decompose` gives every head's direct term (its write
through the linearised ``ln_post`` and ``proj``); a head set's embedding is the image embedding less the sum
of its heads' terms, renormalised, and zero-shot top-1 is read from it as from the unpruned one. Unlike
soft pruning, later layers see the head unchanged: this measures what the head writes into the embedding,
not what other heads build from it.

The head sets (:func:`direct_head_sets`): ``none``; every head alone (``head:L0.H1``); and for each pruned set
the checks test (``concept:<factor>``: heads whose label names the factor; ``high`` / ``low``: the CCS
categories) ``null_sets`` matched random sets (``null:<set>``, seed s): the same number of heads in each
layer, drawn from that layer. One pass over each task serves them all.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import polars as pl
import torch

from ccs_dist.artifacts.schemas import EVALUATION_SCHEMA
from ccs_dist.benchmark.config import BenchmarkConfig
from ccs_dist.ccs.head_sets import HeadSet, HeadSetConfig, build_head_sets, label_families
from ccs_dist.core.heads import head_name, parse_head_name
from ccs_dist.data.toy.scenes import TASK_PREFIX, factor_of_task
from ccs_dist.decomposition.kernel import decompose
from ccs_dist.evaluate.run import EvalConfig, evaluate_rows

NONE = "none"
HEAD_PREFIX, NULL_PREFIX = "head:", "null:"


def toy_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """The ``toy-<factor>`` tasks among ``tasks`` (a ``NAME@PATH`` keeps its path)."""
    return tuple(t for t in tasks if t.partition("@")[0].startswith(TASK_PREFIX))


def labelled_sets(ccs: pl.DataFrame, model: str, factors: Sequence[str], concept_map: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """``concept:<factor>`` -> the heads whose label names the factor (through the concept map), every factor
    (an empty set where no label names it)."""
    rows = ccs.filter(pl.col("model") == model).sort("layer", "head").iter_rows(named=True)
    named = [(head_name(r["layer"], r["head"]), set(label_families(r["label"] or "", concept_map))) for r in rows]
    return {f"concept:{f}": tuple(h for h, fams in named if f in fams) for f in factors}


def matched_random(heads: Sequence[str], num_heads: int, n: int, seed: int, salt: int) -> list[tuple[str, ...]]:
    """``n`` random sets with as many heads in each layer as ``heads`` has, drawn from that layer."""
    per_layer: dict[int, int] = {}
    for name in heads:
        layer, _ = parse_head_name(name)
        per_layer[layer] = per_layer.get(layer, 0) + 1
    rng = np.random.default_rng([seed, salt])
    out = []
    for _ in range(n):
        drawn = [(layer, int(h)) for layer, k in sorted(per_layer.items()) for h in rng.choice(num_heads, k, replace=False)]
        out.append(tuple(head_name(l, h) for l, h in sorted(drawn)))
    return out


def direct_head_sets(ccs: pl.DataFrame, model: str, num_layers: int, num_heads: int, factors: Sequence[str],
                     concept_map: Mapping[str, Sequence[str]], config: BenchmarkConfig) -> list[HeadSet]:
    """``none``, every head alone, and each tested set with its matched random sets (module docstring)."""
    sets = [HeadSet(NONE, ())]
    sets += [HeadSet(HEAD_PREFIX + head_name(l, h), (head_name(l, h),)) for l in range(num_layers) for h in range(num_heads)]
    tested = labelled_sets(ccs, model, factors, concept_map)
    categories = build_head_sets(ccs, model, num_layers, num_heads, HeadSetConfig(conditions=("high", "low"), concept_map=concept_map))
    tested.update({hs.condition: hs.heads for hs in categories})
    for salt, (name, heads) in enumerate(sorted(tested.items())):
        if heads:  # an empty set is not evaluated: its checks are misses, not a zero drop
            sets.append(HeadSet(name, tuple(heads)))
            sets += [HeadSet(NULL_PREFIX + name, r, seed=s)
                     for s, r in enumerate(matched_random(heads, num_heads, config.null_sets, config.seed, salt))]
    return sets


def direct_path_encoder(num_layers: int):
    """A head-set encoder (:data:`ccs_dist.evaluate.encode.HeadSetEncoder`): each set's embedding is the image
    embedding less its heads' direct terms: [S, B, E] (normalised by the caller)."""

    masks: dict[tuple[tuple[str, ...], ...], torch.Tensor] = {}

    @torch.no_grad()
    def encode(loaded, images, head_sets):
        d = decompose(loaded, images, layers=list(range(num_layers)))
        heads_BUE = d.heads.float().flatten(1, 2)
        key = tuple(tuple(h) for h in head_sets)
        if key not in masks:
            H = d.heads.shape[2]
            m = torch.zeros(len(head_sets), heads_BUE.shape[1])
            for s, names in enumerate(head_sets):
                for name in names:
                    layer, head = parse_head_name(name)
                    m[s, d.layers.index(layer) * H + head] = 1.0
            masks[key] = m
        m_SU = masks[key].to(heads_BUE.device)
        return d.embedding.float()[None] - torch.einsum("su,bue->sbe", m_SU, heads_BUE)

    return encode


def direct_ablation(loaded, ccs: pl.DataFrame, tasks: Sequence[str], eval_config: EvalConfig,
                    concept_map: Mapping[str, Sequence[str]], config: BenchmarkConfig = BenchmarkConfig()) -> pl.DataFrame:
    """The ``direct_ablation`` table (the evaluation table's schema) of one model on its toy tasks."""
    tasks = toy_tasks(tasks)
    if not tasks:
        return pl.DataFrame(schema=EVALUATION_SCHEMA)
    factors = [factor_of_task(t.partition("@")[0]) for t in tasks]
    sets = direct_head_sets(ccs, loaded.key, loaded.num_layers, loaded.num_heads, factors, concept_map, config)
    # direct-path removal subtracts the term: the evaluation's zero / mean ablation does not apply
    rows = evaluate_rows(loaded, tasks, sets, replace(eval_config, ablation="zero"), direct_path_encoder(loaded.num_layers))
    return pl.DataFrame([r for r in rows if r["metric"] == "top1"], schema=EVALUATION_SCHEMA)

