"""Card stage: every labelled head's image-grounded scores (:mod:`ccs_dist.card`), after the score stage.

It reads the decomposition the spans stage made (found again by its key in the cache, or made again on a
worker that lacks it: the same images, the same result), loads the reference encoder named by ``card.reference``
and returns the tables ``head_scores`` and ``score_agreement`` with its cost (images, requests, seconds)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import polars as pl

from ccs_dist.card.config import CardConfig
from ccs_dist.card.inputs import card_inputs
from ccs_dist.card.reference import load_reference
from ccs_dist.card.run import head_scores_table, score_agreement_table
from ccs_dist.data.images import resolve_image_set
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.models.loading import LoadedModel
from ccs_dist.spans.table import SpanConfig
from ccs_dist.stages.decompose import Layers, decompose_stage
from ccs_dist.stages.model import at_precision

CARD_TABLES = ("head_scores", "score_agreement")


@dataclass(frozen=True)
class CardStageResult:
    tables: dict[str, pl.DataFrame]
    facts: dict[str, Any]


def card_stage(loaded: LoadedModel, spans_df: pl.DataFrame, ccs: pl.DataFrame, judgments: pl.DataFrame, config: CardConfig,
               *, probe: DecomposeConfig, layers: Layers, spans: SpanConfig, cache_dir: str, progress: bool) -> CardStageResult:
    t0 = time.perf_counter()
    reference, self_reference = load_reference(config, loaded)
    decomposed = decompose_stage(at_precision(loaded, spans.precision), probe, layers=layers, cache_dir=cache_dir,
                                 progress=progress, moment_buckets=spans.stability.buckets, moment_seed=spans.stability.seed)
    labelled = ccs.filter(~pl.col("flagged") & pl.col("label").is_not_null())
    inputs = card_inputs(loaded, reference, decomposed.artifact, resolve_image_set(probe.images, cache_dir),
                         labelled["label"].to_list(), config)
    scores = head_scores_table(inputs, ccs, spans_df, judgments, config)
    heads = scores.select("layer", "head").n_unique()
    seconds = time.perf_counter() - t0
    facts = {"reference": reference.key, "self_reference": self_reference, "reference_random_init": reference.random_init,
             "heads": heads, **inputs.facts, "requests": 0, "seconds": round(seconds, 3),
             "seconds_per_head": round(seconds / max(heads, 1), 4), "config": dataclasses.asdict(config)}
    return CardStageResult({"head_scores": scores, "score_agreement": score_agreement_table(scores)}, facts)
