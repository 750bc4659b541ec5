"""Card stage: every labelled head's image-grounded scores (:mod:`ccs_dist.card`), after the score stage.

It reads the decomposition the spans stage made (found again by its key in the cache, or made again on a
worker that lacks it: the same images, the same result), loads the reference encoder named by ``card.reference``
and returns the tables ``head_scores`` and ``score_agreement`` with its cost (images, requests, seconds)."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import polars as pl

from ccs_dist.artifacts.schemas import CCS_INTERVALS_SCHEMA
from ccs_dist.artifacts.store import ArtifactStore
from ccs_dist.card.config import CardConfig
from ccs_dist.card.intervals import ccs_intervals_table, head_ccs_bounds, requests_bound, resample_spans, with_ccs_bounds
from ccs_dist.card.inputs import card_inputs
from ccs_dist.card.reference import load_reference
from ccs_dist.card.run import head_scores_table, score_agreement_table, specificity_rows
from ccs_dist.card.specificity import direct_path_encoder, specificity_scores
from ccs_dist.ccs.head_sets import HeadSet, load_concept_map
from ccs_dist.core.heads import head_name
from ccs_dist.evaluate.run import evaluate
from ccs_dist.data.images import resolve_image_set
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.llm.config import ScoreConfig
from ccs_dist.models.loading import LoadedModel
from ccs_dist.spans.table import SpanConfig
from ccs_dist.stages.decompose import Layers, decompose_stage
from ccs_dist.stages.model import at_precision
from ccs_dist.stages.sources import resolve_pool
from ccs_dist.text.embed import embed_pool

log = logging.getLogger(__name__)

CARD_TABLES = ("head_scores", "ccs_intervals", "score_agreement")


@dataclass(frozen=True)
class CardStageResult:
    tables: dict[str, pl.DataFrame]
    facts: dict[str, Any]


def card_stage(loaded: LoadedModel, spans_df: pl.DataFrame, ccs: pl.DataFrame, judgments: pl.DataFrame, config: CardConfig,
               *, probe: DecomposeConfig, layers: Layers, spans: SpanConfig, pool: str, llm: ScoreConfig, cache_dir: str,
               progress: bool, eval_config=None, concept_map: str | None = None) -> CardStageResult:
    """The card's tables of ``loaded`` (``llm``: the score stage's scoring, for the resamples' spans)."""
    t0 = time.perf_counter()
    reference, self_reference = load_reference(config, loaded)
    decomposed = decompose_stage(at_precision(loaded, spans.precision), probe, layers=layers, cache_dir=cache_dir,
                                 progress=progress, moment_buckets=spans.stability.buckets, moment_seed=spans.stability.seed)
    labelled = ccs.filter(~pl.col("flagged") & pl.col("label").is_not_null())
    inputs = card_inputs(loaded, reference, decomposed.artifact, resolve_image_set(probe.images, cache_dir),
                         labelled["label"].to_list(), config)
    scores = head_scores_table(inputs, ccs, spans_df, judgments, config)
    heads = scores.select("layer", "head").n_unique()
    spec_rows, spec_facts = _specificity(loaded, labelled, config, eval_config, concept_map)
    if spec_rows:
        scores = pl.concat([scores, pl.DataFrame(spec_rows, schema=scores.schema, orient="row")]).sort(
            ["model", "layer", "head", "score"])
    intervals, interval_facts = _intervals(loaded, decomposed.artifact, ccs, config, spans, pool, llm, cache_dir)
    if config.resamples:
        scores = with_ccs_bounds(scores, head_ccs_bounds(intervals.pop("resampled")))
    seconds = time.perf_counter() - t0
    facts = {"reference": reference.key, "self_reference": self_reference, "reference_random_init": reference.random_init,
             "heads": heads, **inputs.facts, **interval_facts, **spec_facts, "seconds": round(seconds, 3),
             "seconds_per_head": round(seconds / max(heads, 1), 4), "config": dataclasses.asdict(config)}
    return CardStageResult({"head_scores": scores, "ccs_intervals": intervals["table"],
                            "score_agreement": score_agreement_table(scores)}, facts)


def _specificity(loaded, labelled: pl.DataFrame, config: CardConfig, eval_config, concept_map: str | None):
    """The ``specificity_whole`` / ``specificity_direct`` rows (:mod:`ccs_dist.card.specificity`) and their cost."""
    if not config.tasks or eval_config is None:
        return [], {"specificity_tasks": 0}
    t0 = time.perf_counter()
    heads = {(r["layer"], r["head"]): r["label"] for r in labelled.iter_rows(named=True)}
    sets = [HeadSet("original", ())] + [HeadSet(head_name(*k), (head_name(*k),)) for k in sorted(heads)]
    families = load_concept_map(concept_map)
    eval_config = dataclasses.replace(eval_config, limit=config.task_limit, progress=False)
    rows = []
    for score, encoder in (("specificity_whole", None), ("specificity_direct", direct_path_encoder)):
        table = evaluate(loaded, list(config.tasks), sets, eval_config, encoder=encoder).filter(pl.col("metric") == "top1")
        top1 = {(r["task"], r["condition"]): r["value"] / 100.0 for r in table.iter_rows(named=True)}
        rows += specificity_rows(loaded.key, heads, specificity_scores(top1, heads, config.tasks, families), score)
    return rows, {"specificity_tasks": len(config.tasks), "specificity_head_sets": len(sets),
                  "specificity_seconds": round(time.perf_counter() - t0, 3)}


def _intervals(loaded, artifact, ccs, config: CardConfig, spans: SpanConfig, pool: str, llm: ScoreConfig, cache_dir: str):
    """({table, resampled}, facts): the CCS intervals over ``config.resamples`` half-samples (an empty table at 0)."""
    if not config.resamples:
        return {"table": pl.DataFrame(schema=CCS_INTERVALS_SCHEMA)}, {"resamples": 0, "requests_bound": 0}
    from ccs_dist.llm.score import score_spans  # the HTTP clients load only when scoring

    n_judges = max(len(llm.offline_judges), 1) if llm.backend == "offline" else len(llm.judges)
    bound = requests_bound(config.resamples, ccs.height, spans.m, n_judges)
    log.info("card intervals: %d half-samples x %d heads: at most %d scoring requests (%s backend, cached)",
             config.resamples, ccs.height, bound, llm.backend)
    view = at_precision(loaded, spans.precision)
    descriptions = resolve_pool(pool, cache_dir)
    text_emb = embed_pool(view, descriptions, ArtifactStore(cache_dir), progress=False)
    tables = resample_spans(loaded.key, artifact, descriptions.texts, text_emb, spans, config.resamples, config.seed,
                            device=view.device)
    resampled = [score_spans(t, llm).ccs for t in tables]
    return ({"table": ccs_intervals_table(ccs, resampled), "resampled": resampled},
            {"resamples": config.resamples, "requests_bound": bound if llm.backend != "offline" else 0,
             "offline_scorings": bound if llm.backend == "offline" else 0})
