"""LLM labeling and judging: the HTTP edge of ccs_dist.

Public API: :func:`score_spans` (spans -> labels, judgments, CCS, CCS@K) with :class:`ScoreConfig`,
:class:`EndpointConfig`; :class:`ScoreResult`.
Heavy imports (openai, the embedders) happen on first use.
"""

from __future__ import annotations

from ccs_dist.llm.config import EndpointConfig, ScoreConfig

__all__ = ["EndpointConfig", "ScoreConfig", "ScoreResult", "score_spans", "read_spans"]


def __getattr__(name: str):
    if name in ("score_spans", "ScoreResult", "read_spans"):
        from ccs_dist.llm import score  # lazy: the flat names load score (and its HTTP clients) on first use

        return getattr(score, name)
    raise AttributeError(name)
