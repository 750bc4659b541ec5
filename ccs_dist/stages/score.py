"""Score stage: an LLM (or the offline judge) labels every head's spans and judges each (description,
label) pair; the verdicts give CCS. The job spec section ``llm`` is the library's
:class:`~ccs_dist.llm.config.ScoreConfig` itself (a spec defaults to the offline backend)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from ccs_dist.llm.config import ScoreConfig

if TYPE_CHECKING:
    from ccs_dist.llm.score import ScoreResult

SCORE_TABLES = ("labels", "judgments", "ccs", "ccs_at_k", "judge_validation")


def score_stage(spans: pl.DataFrame, config: ScoreConfig) -> ScoreResult:
    """Labels, verdicts and CCS of every head of ``spans``: the tables :data:`SCORE_TABLES` and the client's stats."""
    from ccs_dist.llm.score import require_scored, score_spans  # lazy: the HTTP clients load only when a stage scores

    result = score_spans(spans, config)
    require_scored(result, config.min_scored_share)
    return result
