"""Score stage: an LLM (or the offline judge) labels every head's spans and judges each (description,
label) pair; the verdicts give CCS. The job spec section ``llm`` is :class:`LLMConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import polars as pl
from pydantic import Field, field_validator

from ccs_dist.llm.config import CacheConfig, EndpointConfig, OfflineConfig, ScoreConfig, Scoring
from ccs_dist.stages.config import StageConfig

if TYPE_CHECKING:
    from ccs_dist.llm.score import ScoreResult

SCORE_TABLES = ("labels", "judgments", "ccs", "ccs_at_k")
_DEFAULT_ENDPOINT = EndpointConfig()


class EndpointSection(StageConfig):
    model: str = _DEFAULT_ENDPOINT.model
    base_url: str = _DEFAULT_ENDPOINT.base_url
    api_key_env: str | None = Field(_DEFAULT_ENDPOINT.api_key_env, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # null: send no key
    rpm: float = Field(_DEFAULT_ENDPOINT.rpm, gt=0)
    tpm: float = Field(_DEFAULT_ENDPOINT.tpm, gt=0)
    max_concurrency: int = Field(_DEFAULT_ENDPOINT.max_concurrency, ge=1)
    timeout_s: float = Field(_DEFAULT_ENDPOINT.timeout_s, gt=0)
    max_attempts: int = Field(_DEFAULT_ENDPOINT.max_attempts, ge=1)
    price_in_per_mtok: float = Field(_DEFAULT_ENDPOINT.price_in_per_mtok, ge=0)
    price_out_per_mtok: float = Field(_DEFAULT_ENDPOINT.price_out_per_mtok, ge=0)

    def endpoint(self) -> EndpointConfig:
        return EndpointConfig(**self.model_dump())


class LLMConfig(StageConfig):
    """Who labels and judges (job spec section ``llm``)."""

    backend: Literal["openai", "offline"] = "offline"
    labeler: EndpointSection = EndpointSection()
    judges: tuple[EndpointSection, ...] = (EndpointSection(),)
    judge_mode: Literal["pair", "head"] = ScoreConfig.judge_mode
    offline_embedder: str = OfflineConfig.embedder
    offline_threshold: float | None = None  # in offline_scoring's units; null: calibrated on the default pool
    offline_scoring: Scoring = OfflineConfig.scoring
    offline_judges: tuple[str, ...] = ()  # offline backend: judges minilm or clip:ARCH[/PRETRAINED] (majority vote)
    cache: Literal["use", "refresh", "bypass"] = "use"
    max_description_chars: int = Field(ScoreConfig.max_description_chars, ge=1)  # longer ones are cut before sending
    label_prompt: Literal["label", "label_paper"] = "label"  # label_paper: the paper's one-word prompt

    @field_validator("offline_judges")
    @classmethod
    def _offline_judges(cls, v):
        bad = [j for j in v if not (j == "minilm" or j.startswith("clip:"))]
        if bad:
            raise ValueError(f"offline judges {bad}: use minilm or clip:ARCH[/PRETRAINED]")
        return v

    def score_config(self, *, cache_dir: str | Path, show_progress: bool) -> ScoreConfig:
        """The library's config; LLM answers are cached under ``cache_dir`` (the run's ``CACHE/llm``)."""
        return ScoreConfig(
            backend=self.backend,
            labeler=self.labeler.endpoint(),
            judges=tuple(j.endpoint() for j in self.judges),
            judge_mode=self.judge_mode,
            cache=CacheConfig(directory=str(cache_dir), mode=self.cache),
            offline=OfflineConfig(embedder=self.offline_embedder, threshold=self.offline_threshold, scoring=self.offline_scoring),
            offline_judges=self.offline_judges,
            max_description_chars=self.max_description_chars,
            show_progress=show_progress,
            label_prompt=self.label_prompt,
        )


def score_stage(spans: pl.DataFrame, config: ScoreConfig) -> ScoreResult:
    """Labels, verdicts and CCS of every head of ``spans``: the tables :data:`SCORE_TABLES` and the client's stats."""
    from ccs_dist.llm.score import require_scored, score_spans  # the HTTP clients load only when a stage scores

    result = score_spans(spans, config)
    require_scored(result, config.min_scored_share)
    return result
