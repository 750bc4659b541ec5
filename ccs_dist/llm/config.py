"""Configs of the LLM stage (frozen dataclasses): the one home of the LLM defaults; the CLI and job specs import them.

The API key is never a field: an endpoint names the environment variable that holds it, and the value
is read at the moment a client is built (see :mod:`ccs_dist.llm.client`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from ccs_dist.ccs.scores import CategoryThresholds

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"

CacheMode = Literal["use", "refresh", "bypass"]
JudgeMode = Literal["pair", "head"]
Scoring = Literal["normalised", "cosine"]  # the offline backend's scores (ccs_dist.llm.offline)
SCORINGS: tuple[str, ...] = get_args(Scoring)
JsonMode = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class EndpointConfig:
    """One OpenAI-compatible chat endpoint and how hard we may push it.

    ``api_key_env`` names the variable whose value is sent as the bearer key to this endpoint and no
    other; None sends no key (a local server without auth). ``timeout_s`` bounds one whole attempt,
    connect to last byte, so a request ends within ``max_attempts * (timeout_s + backoff_max_s)``.
    ``rpm``/``tpm`` are our own budget (requests / tokens per minute); the pool tightens them further
    when the server sends ``x-ratelimit-*`` headers. ``burst_s`` is how many seconds of budget the
    token buckets may hold, kept small so that our bursts stay within the server's.
    """

    model: str = DEFAULT_MODEL
    base_url: str = DEFAULT_BASE_URL
    api_key_env: str | None = DEFAULT_KEY_ENV
    rpm: float = 500.0
    tpm: float = 200_000.0
    burst_s: float = 0.1
    max_concurrency: int = 16
    timeout_s: float = 60.0
    max_attempts: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    json_mode: JsonMode = "auto"
    price_in_per_mtok: float = 0.15  # USD per million prompt tokens
    price_out_per_mtok: float = 0.60  # USD per million completion tokens

    @property
    def name(self) -> str:
        """Judge/labeler name recorded in tables: ``model@host[:port]`` (never the URL's credentials)."""
        from ccs_dist.llm.urls import host_port

        return f"{self.model}@{host_port(self.base_url)}"


@dataclass(frozen=True)
class CacheConfig:
    """Where LLM answers are kept. ``refresh`` re-asks and overwrites; ``bypass`` neither reads nor writes."""

    directory: str = "cache/llm"
    mode: CacheMode = "use"


@dataclass(frozen=True)
class OfflineConfig:
    """The no-network backend: a sentence embedder (``minilm`` or ``clip:ARCH[/PRETRAINED]``).

    ``scoring``: ``normalised`` or ``cosine`` (see :mod:`ccs_dist.llm.offline`). ``threshold`` (in the
    scoring's units) None means: calibrate on the default description pool's family tags.
    """

    embedder: str = "minilm"
    threshold: float | None = None
    scoring: Scoring = "normalised"


@dataclass(frozen=True)
class ScoreConfig:
    """Everything :func:`ccs_dist.llm.score_spans` needs.

    ``labeler`` labels every head; every entry of ``judges`` judges every (description, label) pair
    and the majority of the valid verdicts decides (ties count as not aligned). With
    ``backend='offline'`` the endpoints are ignored and ``offline.embedder`` (or each name in
    ``offline_judges``) plays both parts.
    """

    backend: Literal["openai", "offline"] = "openai"
    labeler: EndpointConfig = field(default_factory=EndpointConfig)
    judges: tuple[EndpointConfig, ...] = (EndpointConfig(),)
    judge_mode: JudgeMode = "pair"
    answer_attempts: int = 3  # asks per question while the answer is unparseable or off-vocabulary
    cache: CacheConfig = field(default_factory=CacheConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    offline_judges: tuple[str, ...] = ()
    thresholds: CategoryThresholds = field(default_factory=CategoryThresholds)
    max_description_chars: int = 2000  # longer descriptions are cut (with a warning) before they are sent
    show_progress: bool = True
    label_prompt: str = "label"  # prompt template of the labeler: label (label_v1) or label_paper (one word)
    min_scored_share: float = 0.5  # the score stage fails when fewer of a model's heads get a CCS (are unflagged), or none does
