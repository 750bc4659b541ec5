"""Job specs: YAML validated up front, with one-line errors that name the field and the accepted values.

``${VAR}`` and ``${VAR:-default}`` in the YAML text are replaced from the environment (dataset roots,
endpoints). Validation (pydantic) happens only here, at the edge; the rest of the job uses the frozen
stage configs built by :meth:`JobSpec.score_config` and friends.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ccs_dist.errors import UserError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
PACKAGE_JOBS = Path(__file__).resolve().parents[2] / "jobs"
DEFAULT_SPEC = PACKAGE_JOBS / "demo.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Strict):
    arch: str
    pretrained: str | None = None
    layers: int | tuple[int, ...] | None = None  # overrides the spec's layers for this model
    rank: int | None = Field(None, ge=1)  # overrides spans.rank for this model

    @field_validator("pretrained", mode="before")
    @classmethod
    def _none(cls, v):
        return None if v in (None, "", "none", "None", "random", "random-init") else str(v)


class ProbeSection(_Strict):
    images: str = "synthetic:256"
    batch_size: int = Field(64, ge=1)
    on_bad_image: Literal["skip", "error"] = "skip"
    workers: int | None = Field(None, ge=0)


class StabilitySection(_Strict):
    resamples: int = Field(8, ge=0)  # K random half-samples of the probe images; 0: no stability columns
    buckets: int = Field(10, ge=2)
    seed: int = 0


class SpansSection(_Strict):
    m: int = Field(5, ge=1)
    rank: int = Field(80, ge=1)
    method: Literal["exact", "faiss"] = "exact"
    rank_policy: Literal["numerical", "reference"] = "numerical"  # reference: keep rank-80 noise directions
    precision: Literal["fp32", "bf16"] = "fp32"  # decomposition + text embeddings for TextSpan
    stability: StabilitySection = StabilitySection()

    def config(self, rank: int | None = None):
        from ccs_dist.span_stability import StabilityConfig
        from ccs_dist.spans import SpanConfig

        return SpanConfig(m=self.m, rank=rank or self.rank, method=self.method, rank_policy=self.rank_policy,
                          precision=self.precision, stability=StabilityConfig(**self.stability.model_dump()))


class EndpointSection(_Strict):
    model: str = "gpt-4o-mini"
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    rpm: float = Field(500.0, gt=0)
    tpm: float = Field(200_000.0, gt=0)
    max_concurrency: int = Field(16, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(8, ge=1)
    price_in_per_mtok: float = Field(0.15, ge=0)
    price_out_per_mtok: float = Field(0.60, ge=0)


class LLMSection(_Strict):
    backend: Literal["openai", "offline"] = "offline"
    labeler: EndpointSection = EndpointSection()
    judges: tuple[EndpointSection, ...] = (EndpointSection(),)
    judge_mode: Literal["pair", "head"] = "pair"
    offline_embedder: str = "minilm"
    offline_threshold: float | None = None
    cache: Literal["use", "refresh", "bypass"] = "use"
    label_prompt: Literal["label", "label_paper"] = "label"  # label_paper: the paper's one-word prompt


class EvaluationSection(_Strict):
    tasks: tuple[str, ...] = ()
    data_root: str = "data"
    synthetic: bool = False  # write synthetic datasets in the real formats into data_root first
    conditions: tuple[str, ...] = ("original", "high", "low", "moderate", "random", "equal", "concept")
    seeds: tuple[int, ...] = (0, 1, 2)
    concepts: tuple[str, ...] | None = None
    heads: dict[str, str] = {}  # explicit lists: name -> "L11.H5,L10.H8"
    batch_size: int = Field(64, ge=1)
    limit: int | None = Field(None, ge=1)
    templates_per_class: int | None = Field(None, ge=1)
    frames: int | None = Field(None, ge=1)
    k: int = Field(10, ge=1)
    occupations: str | None = None
    ablation: Literal["zero", "mean"] = "zero"
    download: bool = False
    min_stability: float | None = Field(None, ge=0, le=1)  # heads less span-stable join no CCS-based head set
    concept_heads: Literal["any", "high"] = "any"  # high: a concept's high-CCS heads only (the paper)
    random_layers: Literal["scored", "all", "reference"] = "scored"
    video_pooling: Literal["renormalised", "mean"] = "renormalised"  # mean: the paper's code
    class_names: Literal["standard", "paper"] = "standard"  # paper: the reference code's class names
    bias_templates: Literal["standard", "paper"] = "standard"  # paper: the reference's four occupation templates
    bias_ranking: Literal["global", "per_occupation"] = "global"  # per_occupation: SocialCounterfactuals as the paper


class ResourcesSection(_Strict):
    gpus_per_model: float = Field(0, ge=0)
    cpus_per_model: float = Field(1, gt=0)
    model_workers: int = Field(1, ge=1)  # model actors alive at once
    device: str = "auto"  # local mode: cpu, cuda, cuda:N, auto
    precision: Literal["fp32", "bf16"] | None = None


class JobSpec(_Strict):
    run: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    protocol: Literal["default", "paper"] = "default"  # fills the options it governs (ccs_dist.protocol)
    out: str = "reports"
    cache_dir: str = "cache"
    models: tuple[ModelEntry, ...] = Field(min_length=1)
    probe: ProbeSection = ProbeSection()
    layers: int | tuple[int, ...] = 4
    pool: str = "default"
    spans: SpansSection = SpansSection()
    llm: LLMSection = LLMSection()
    evaluation: EvaluationSection = EvaluationSection()
    resources: ResourcesSection = ResourcesSection()

    @model_validator(mode="before")
    @classmethod
    def _protocol(cls, data):
        from ccs_dist.protocol import apply_protocol

        return apply_protocol(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _unique_models(self):
        keys = [(m.arch, m.pretrained) for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError("models: the same (arch, pretrained) appears twice")
        return self

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.run

    def score_config(self, show_progress: bool = True):
        from ccs_dist.llm.config import CacheConfig, EndpointConfig, OfflineConfig, ScoreConfig

        def endpoint(e: EndpointSection) -> EndpointConfig:
            return EndpointConfig(**e.model_dump())

        return ScoreConfig(
            backend=self.llm.backend,
            labeler=endpoint(self.llm.labeler),
            judges=tuple(endpoint(j) for j in self.llm.judges),
            judge_mode=self.llm.judge_mode,
            cache=CacheConfig(directory=str(Path(self.cache_dir) / "llm"), mode=self.llm.cache),
            offline=OfflineConfig(embedder=self.llm.offline_embedder, threshold=self.llm.offline_threshold),
            show_progress=show_progress,
            label_prompt=self.llm.label_prompt,
        )


def _expand(text: str) -> str:
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        value = os.environ.get(name)
        if value is None:
            if default is None:
                raise UserError(f"the spec uses ${{{name}}} but {name} is not set: export it or write ${{{name}:-default}}")
            return default
        return value

    return _VAR.sub(sub, text)


def _explain(e: ValidationError, source: str) -> str:
    err = e.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "literal_error":
        msg = f"got {err.get('input')!r}, expected {err['ctx']['expected']}"
    elif err["type"] == "missing":
        msg = "is required"
    more = f" (and {len(e.errors()) - 1} more problem(s))" if len(e.errors()) > 1 else ""
    return f"invalid job spec {source}: {where}: {msg}{more}"


def load_spec(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read and validate a YAML job spec (default: the offline demo)."""
    path = Path(path) if path is not None else DEFAULT_SPEC
    if not path.is_file():
        raise UserError(f"job spec {path} not found: pass --spec FILE (e.g. jobs/demo.yaml)")
    try:
        data = yaml.safe_load(_expand(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"job spec {path} is not valid YAML{where}: fix the syntax") from e
    if not isinstance(data, dict):
        raise UserError(f"job spec {path} must be a YAML mapping with at least run: and models:")
    data.update(overrides or {})
    try:
        return JobSpec.model_validate(data)
    except ValidationError as e:
        raise UserError(_explain(e, str(path))) from e
