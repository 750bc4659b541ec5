"""Configs of the LLM stage (frozen dataclasses): the one home of the LLM defaults. :class:`ScoreConfig` is the job
spec section ``llm`` itself (validated at the edge, :mod:`ccs_dist.stages.config`); ``internal`` fields are set by
the stage or the library, never by a spec.

The API key is never a field: an endpoint names the environment variable that holds it, and the value
is read at the moment a client is built (see :mod:`ccs_dist.llm.client`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from ccs_dist.ccs.scores import CategoryThresholds
from ccs_dist.llm.urls import host_port

DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"

CacheMode = Literal["use", "refresh", "bypass"]
JudgeMode = Literal["pair", "head"]
Scoring = Literal["normalised", "cosine"]  # the offline backend's scores (ccs_dist.llm.offline)
SCORINGS: tuple[str, ...] = get_args(Scoring)
VerdictRule = Literal["rank", "threshold"]  # the offline judge's verdict rule (ccs_dist.llm.calibration)
VERDICTS: tuple[str, ...] = get_args(VerdictRule)
GOLD_PAIRS = 320  # pairs in the shipped gold file (ccs_dist/llm/data/gold_pairs_v1.csv)
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

    model: str = field(default=DEFAULT_MODEL, metadata={"help": "model that labels the heads (and judges when no judges are given)"})
    base_url: str = field(default=DEFAULT_BASE_URL, metadata={"help": "endpoint base URL, e.g. http://127.0.0.1:8000/v1 for vLLM/Ollama"})
    api_key_env: str | None = field(default=DEFAULT_KEY_ENV, metadata={
        "pattern": r"[A-Za-z_][A-Za-z0-9_]*", "help": "name of the environment variable holding the API key (none: send no key)"})
    rpm: float = field(default=500.0, metadata={"gt": 0, "help": "requests per minute allowed per endpoint (tightened by the server's x-ratelimit headers)"})
    tpm: float = field(default=200_000.0, metadata={"gt": 0, "help": "tokens per minute allowed per endpoint"})
    burst_s: float = field(default=0.1, metadata={"internal": True})
    max_concurrency: int = field(default=16, metadata={"ge": 1, "help": "most requests in flight per endpoint"})
    timeout_s: float = field(default=60.0, metadata={"gt": 0, "help": "seconds one attempt may take, connect to last byte, before it is retried"})
    max_attempts: int = field(default=8, metadata={"ge": 1, "help": "attempts per request (429, 5xx, timeouts, dropped connections)"})
    backoff_base_s: float = field(default=1.0, metadata={"internal": True})
    backoff_max_s: float = field(default=60.0, metadata={"internal": True})
    json_mode: JsonMode = field(default="auto", metadata={"internal": True})
    price_in_per_mtok: float = field(default=0.15, metadata={"ge": 0, "help": "USD per million prompt tokens, for the cost estimate"})
    price_out_per_mtok: float = field(default=0.60, metadata={"ge": 0, "help": "USD per million completion tokens, for the cost estimate"})

    @property
    def name(self) -> str:
        """Judge/labeler name recorded in tables: ``model@host[:port]`` (never the URL's credentials)."""
        return f"{self.model}@{host_port(self.base_url)}"


def _offline_judges(names: tuple[str, ...]) -> str | None:
    bad = [j for j in names if not (j == "minilm" or j.startswith("clip:"))]
    return f"offline judges {bad}: use minilm or clip:ARCH[/PRETRAINED]" if bad else None


@dataclass(frozen=True)
class ScoreConfig:
    """Everything :func:`ccs_dist.llm.score_spans` needs (the job spec section ``llm``).

    ``labeler`` labels every head; every entry of ``judges`` judges every (description, label) pair
    and the majority of the valid verdicts decides (ties count as not aligned). With
    ``backend='offline'`` the endpoints are ignored and ``offline_embedder`` (or each name in
    ``offline_judges``) plays both parts. LLM answers are cached in ``cache_dir`` (``cache``: ``use``;
    ``refresh`` re-asks and overwrites; ``bypass`` neither reads nor writes).
    """

    backend: Literal["openai", "offline"] = field(default="openai", metadata={
        "help": "openai (any OpenAI-compatible endpoint) or offline (local embedder, no network, no key)"})
    labeler: EndpointConfig = field(default_factory=EndpointConfig, metadata={"flat": True})  # its flags: --model, --base-url, ...
    judges: tuple[EndpointConfig, ...] = (EndpointConfig(),)
    judge_mode: JudgeMode = field(default="pair", metadata={
        "help": "pair (one request per description, the paper's protocol) or head (one request per head, five verdicts as JSON)"})
    offline_embedder: str = field(default="minilm", metadata={"help": "offline labeler embedder: minilm or clip:ARCH[/PRETRAINED]"})
    offline_threshold: float | None = field(default=None, metadata={
        "help": "offline judge threshold in offline_scoring's units (none: calibrated on the default pool's family tags)"})
    offline_scoring: Scoring = field(default="normalised", metadata={"help": (
        "offline score of a description for a concept: normalised (cosine less the description's mean over the concept "
        "vocabulary, over its spread, less the concept's mean pull on the default pool) or cosine (earlier releases)")})
    offline_verdict: VerdictRule = field(default="rank", metadata={"help": (
        "offline verdict rule: rank (the label must beat a calibrated share of the vocabulary's concepts for the "
        "description) or threshold (its score clears a calibrated threshold: earlier releases)")})
    judge_gold_pairs: int = field(default=GOLD_PAIRS, metadata={"ge": 0, "help": (
        f"gold pairs (of the {GOLD_PAIRS} shipped, stratified) every judge is scored on in each run (judge_validation "
        "table): an endpoint judge pays one request per pair in pair mode, once (cached); 0 skips it and the run is "
        "flagged as not validated")})
    offline_judges: tuple[str, ...] = field(default=(), metadata={
        "check": _offline_judges, "help": "offline backend: judges minilm or clip:ARCH[/PRETRAINED] (majority vote)"})
    cache: CacheMode = field(default="use", metadata={
        "help": "use the cached LLM answers, refresh them (ask again, overwrite) or bypass the cache"})
    max_description_chars: int = field(default=2000, metadata={
        "ge": 1, "help": "descriptions longer than this are cut to it (with a warning) before they are sent"})
    label_prompt: Literal["label", "label_paper"] = field(default="label", metadata={
        "help": "prompt template of the labeler: label (label_v1) or label_paper (the paper's one word)"})
    min_scored_share: float = field(default=0.5, metadata={"ge": 0.0, "le": 1.0, "help": (
        "the score stage fails when fewer of a model's heads than this share get a CCS (are unflagged), or none does")})
    # Set by the stage / the library, not by a spec:
    cache_dir: str = field(default="cache/llm", metadata={"internal": True})  # the run's CACHE/llm
    answer_attempts: int = field(default=3, metadata={"internal": True})  # asks per question while the answer is unparseable or off-vocabulary
    thresholds: CategoryThresholds = field(default_factory=CategoryThresholds, metadata={"internal": True})
    show_progress: bool = field(default=True, metadata={"internal": True})
    # the world's frozen concepts the offline labeler adds to the shipped vocabulary (the plant pool's)
    offline_vocabulary_extra: tuple[str, ...] = field(default=(), metadata={"internal": True})


@dataclass(frozen=True)
class VisionJudgeConfig:
    """A vision-capable OpenAI-compatible endpoint that decides whether an image shows a label
    (:func:`ccs_dist.llm.vision.judge_images`). Answers are cached in ``cache_dir`` by image sha256, label,
    endpoint, model and prompt version; the key is read from ``endpoint.api_key_env`` when a client is built."""

    endpoint: EndpointConfig = field(default_factory=EndpointConfig)
    top_logprobs: int = field(default=5, metadata={
        "ge": 0, "le": 20, "help": "alternatives of the first answer token asked for, to read P(yes) (0: ask for none)"})
    cache: CacheMode = field(default="use", metadata={
        "help": "use the cached image verdicts, refresh them (ask again, overwrite) or bypass the cache"})
    answer_attempts: int = field(default=3, metadata={
        "ge": 1, "help": "asks per image while the answer is not exactly Yes or No"})
    cache_dir: str = field(default="cache/llm", metadata={"internal": True})  # the run's CACHE/llm
