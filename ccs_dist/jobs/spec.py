"""Job specs: YAML validated up front, with one-line errors that name every bad field and the accepted values.

``${VAR}`` and ``${VAR:-default}`` in the spec's string values are replaced from the environment (dataset
roots, endpoints) after the YAML is parsed, so a value can neither end a line nor add keys. A key given
twice and a true/false where a number belongs are errors. The stage sections (``probe``, ``spans``, ``llm``,
``evaluation``, ``attribution``, ``card``) are the stage configs of :mod:`ccs_dist.stages` themselves, so every stage
option is settable here and its default lives in one place; :meth:`JobSpec.chain_config` gives one model's.

Where paths point (the same wherever the job is started and however ccs_dist is installed):
``--spec NAME`` is a spec shipped from the repository's top-level ``jobs/`` (installed as ``ccs_dist/job_specs``) (``demo``, ``paper_grid``, ``local_gpu``, ``beyond_grid``, ``planted``),
anything else a YAML file. Input paths written in a spec (``pool``, ``probe.images``,
``evaluation.data_root``, ``evaluation.occupations``, ``evaluation.concept_map``, ``TASK@PATH``, checkpoint files,
an ``hf:FOLDER`` that is there) are relative to the
spec file's folder; outputs (``out``, ``cache_dir``) to the directory the job is started in, and are made
absolute there so every worker on this machine writes to the same place. ``out`` and ``cache_dir`` may
also be remote roots (``s3://BUCKET/PREFIX``, see :mod:`ccs_dist.artifacts.storage`): work is then done in a
node-local mirror and published there. Synthetic evaluation sets go under (the local mirror of)
``cache_dir`` unless ``evaluation.data_root`` says otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
import dataclasses
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PlainSerializer, PlainValidator, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ccs_dist.core.errors import UserError
from ccs_dist.core.weights import CHECKPOINT_SUFFIXES, has_no_weights
from ccs_dist.models.hf_clip import HF_PREFIX
from ccs_dist.attribution.run import AttributionConfig
from ccs_dist.card.config import CardConfig, ReferenceConfig
from ccs_dist.card.reference import NO_REFERENCE
from ccs_dist.stages.chain import ChainConfig, llm_cache_dir
from ccs_dist.artifacts.storage import absolute, join, local_dir, refuse_credentials
from ccs_dist.stages.config import ConfigError, dump, validate
from ccs_dist.stages.config import StageConfig as _Strict
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.evaluate.config import EvalConfig
from ccs_dist.stages.model import ModelSpec
from ccs_dist.llm.config import ScoreConfig
from ccs_dist.spans.table import SpanConfig
from ccs_dist.data.images import GENERATED_SETS
from ccs_dist.stages.sources import named_pools
from ccs_dist.core.protocol import apply_protocol

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# The top-level jobs/ (one copy): a wheel installs it as ccs_dist/job_specs (setup.py); a clone reads it in place.
_INSTALLED_SPECS = Path(__file__).resolve().parents[1] / "job_specs"
SHIPPED_SPECS = _INSTALLED_SPECS if _INSTALLED_SPECS.is_dir() else Path(__file__).resolve().parents[2] / "jobs"
DEFAULT_SPEC = "demo"


def _section(cls, **defaults):
    """A spec section that is a stage's dataclass: validated by :func:`ccs_dist.stages.config.validate`, every bad
    field reported (see :func:`_explain`), dumped as its settable fields. ``defaults``: a job's own defaults of
    some fields (the section's default value must agree)."""

    def check(value):
        if isinstance(value, cls):
            return value
        try:
            return validate(cls, {**defaults, **({} if value is None else value)})
        except ConfigError as e:
            raise PydanticCustomError("stage_config", "{message}", {"message": str(e), "problems": e.problems}) from None

    return Annotated[cls, PlainValidator(check), PlainSerializer(dump)]


_LLMSection = _section(ScoreConfig, backend="offline")  # a job scores offline unless told (the library: openai)


class ModelEntry(_Strict):
    arch: str
    pretrained: str | None = None
    layers: int | tuple[int, ...] | None = None  # overrides the spec's layers for this model
    rank: int | None = Field(None, ge=1)  # overrides spans.rank for this model
    card_reference: _section(ReferenceConfig) | None = None  # overrides card.reference for this model

    @field_validator("pretrained", mode="before")
    @classmethod
    def _none(cls, v):
        return None if has_no_weights(v) else str(v)


class ResourcesSection(_Strict):
    gpus_per_model: float = Field(0, ge=0)
    cpus_per_model: float = Field(1, gt=0)
    model_workers: int | None = Field(None, ge=1)  # Ray: most model actors alive at once, shard helpers included (None: as many as fit)
    shard_workers: int | None = Field(None, ge=1)  # Ray: workers sharing one model's probe.shards or evaluation.shards (None: one per shard)
    device: str = "auto"  # local mode: cpu, cuda, cuda:N, auto
    precision: Literal["fp32", "bf16"] | None = None


class JobSpec(_Strict):
    run: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    protocol: Literal["default", "paper"] = "default"  # fills the options it governs (ccs_dist.core.protocol)
    out: str = "reports"
    cache_dir: str = "cache"
    models: tuple[ModelEntry, ...] = Field(min_length=1)
    probe: _section(DecomposeConfig) = DecomposeConfig()
    layers: int | tuple[int, ...] = 4
    pool: str = "default"
    spans: _section(SpanConfig) = SpanConfig()
    llm: _LLMSection = ScoreConfig(backend="offline")
    evaluation: _section(EvalConfig) = EvalConfig()
    attribution: _section(AttributionConfig) = AttributionConfig()
    card: _section(CardConfig) = CardConfig()
    resources: ResourcesSection = ResourcesSection()

    @model_validator(mode="before")
    @classmethod
    def _protocol(cls, data):
        return apply_protocol(data) if isinstance(data, dict) else data

    @model_validator(mode="after")
    def _consistent(self):
        problems = []
        keys = [(m.arch, m.pretrained) for m in self.models]
        if len(set(keys)) != len(keys):
            problems.append("models: the same (arch, pretrained) appears twice")
        ev = self.evaluation
        if ev.data_root is None and not ev.synthetic and any("@" not in t for t in ev.tasks):
            problems.append("evaluation.data_root: is required for real datasets, give the folder that holds them")
        at = self.attribution
        if at.enabled and ev.data_root is None and not ev.synthetic and "@" not in at.task:
            problems.append("attribution.task: a real dataset needs evaluation.data_root, give the folder that holds it")
        if self.card.enabled:
            problems += [f"models.{i}: {NO_REFERENCE} (card.reference or the model's card_reference)"
                         for i, m in enumerate(self.models) if not self._card_of(m).reference.arch]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def data_root(self) -> Path:
        """Where the evaluation datasets are (or, with ``evaluation.synthetic``, are written)."""
        if self.evaluation.data_root is not None:
            return Path(self.evaluation.data_root)
        return local_dir(self.cache_dir) / "synthetic-data"

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def run_root(self) -> str:
        """The run's root: ``OUT/RUN``, a local path or a remote root's URI."""
        return join(self.out, self.run)

    @property
    def run_dir(self) -> Path:
        """Where this process writes the run (``OUT/RUN``, or its node-local mirror for a remote ``out``)."""
        return local_dir(self.run_root)

    def score_config(self, show_progress: bool = True):
        return dataclasses.replace(self.llm, cache_dir=str(llm_cache_dir(self.cache_dir)), show_progress=show_progress)

    def _card_of(self, entry: ModelEntry) -> CardConfig:
        """The card section with the entry's own reference encoder, if it names one."""
        if entry.card_reference is None:
            return self.card
        return dataclasses.replace(self.card, reference=entry.card_reference)

    def chain_config(self, entry: ModelEntry) -> ChainConfig:
        """One model's stage configs: the entry's layers and rank override the spec's."""
        layers = entry.layers if entry.layers is not None else self.layers
        return ChainConfig(
            model=ModelSpec(entry.arch, entry.pretrained, device=self.resources.device, precision=self.resources.precision),
            layers=layers if isinstance(layers, int) else tuple(layers),
            probe=self.probe,
            pool=self.pool,
            spans=dataclasses.replace(self.spans, rank=entry.rank or self.spans.rank),
            llm=self.llm,
            evaluation=self.evaluation,
            attribution=self.attribution,
            card=self._card_of(entry),
            cache_dir=self.cache_dir,
            data_root=str(self.data_root),
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a mapping key given twice (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _protect(text: str) -> tuple[str, dict[str, str]]:
    """Each ``${...}`` replaced by a plain-word token, so that it parses as part of a value anywhere
    (flow mappings included) and is expanded only once the YAML is parsed."""
    found: dict[str, str] = {}

    def token(m: re.Match) -> str:
        t = f"__ccs_var_{len(found)}__"
        found[t] = m.group(0)
        return t

    return _VAR.sub(token, text), found


def _expand_values(data: Any, found: dict[str, str]) -> Any:
    """``${VAR}`` substituted into every string value of parsed YAML (keys and structure untouched)."""
    if isinstance(data, dict):
        return {k: _expand_values(v, found) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand_values(v, found) for v in data]
    if isinstance(data, str) and found:
        return re.sub(r"__ccs_var_\d+__", lambda m: _expand(found.get(m.group(0), m.group(0))), data)
    return data


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


def _explain_one(err: dict) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "literal_error":
        msg = f"got {err.get('input')!r}, expected {err['ctx']['expected']}"
    elif err["type"] == "missing":
        msg = "is required"
    elif err["type"] == "value_error":
        msg = msg.removeprefix("Value error, ")
        where = ""
    return f"{where}: {msg}" if where else msg


def _explain_all(err: dict) -> list[str]:
    if err["type"] == "stage_config":  # a dataclass section: every bad field, under the section's name
        return [f"{'.'.join(str(p) for p in (*err['loc'], *path))}: {msg}" for path, msg in err["ctx"]["problems"]]
    return [_explain_one(err)]


def _explain(e: ValidationError, source: str) -> str:
    """Every problem, on one line: ``a: ...; b: ...``."""
    problems = list(dict.fromkeys(p for err in e.errors() for p in _explain_all(err)))
    head = f"{len(problems)} problems: " if len(problems) > 1 else ""
    return f"invalid job spec {source}: {head}{'; '.join(problems)}"


def shipped_specs() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in SHIPPED_SPECS.glob("*.yaml")))


def find_spec(name_or_path: str | Path | None) -> Path:
    """``--spec`` value -> file: a shipped spec's name (``demo``), else a path (relative to the current directory)."""
    value = str(name_or_path) if name_or_path is not None else DEFAULT_SPEC
    if value in shipped_specs():
        return SHIPPED_SPECS / f"{value}.yaml"
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"job spec {path} not found: pass --spec FILE, or a shipped spec: {', '.join(shipped_specs())}")
    return path


def _anchored(value: str, base: Path) -> str:
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _anchor_images(images: str, base: Path) -> str:
    name, sep, rest = images.partition(":")
    if sep and name in GENERATED_SETS:
        return images
    if sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and rest:  # folder:PATH or DATASET:ROOT
        return f"{name}:{_anchored(rest, base)}"
    return _anchored(images, base)


def _anchor_hf_folder(entry: ModelEntry, base: Path) -> ModelEntry:
    """``hf:FOLDER`` relative to the spec's folder when that folder is there; anything else (a hub id) unchanged."""
    value = entry.arch.removeprefix(HF_PREFIX)
    if entry.arch.startswith(HF_PREFIX) and not Path(value).expanduser().is_absolute() and (base / value).is_dir():
        return entry.model_copy(update={"arch": HF_PREFIX + _anchored(value, base)})
    return entry


def _anchor_paths(spec: JobSpec, base: Path) -> JobSpec:
    """Input paths relative to the spec's folder, outputs relative to the current directory (module docstring)."""
    refuse_credentials("out (--out)", spec.out)  # before the spec is logged or written anywhere
    refuse_credentials("cache_dir (--cache-dir)", spec.cache_dir)

    ev = spec.evaluation
    tasks = tuple(f"{t.partition('@')[0]}@{_anchored(t.partition('@')[2], base)}" if "@" in t else t for t in ev.tasks)
    evaluation = dataclasses.replace(
        ev, tasks=tasks, **{name: _anchored(getattr(ev, name), base) for name in ("data_root", "occupations", "concept_map")
                            if getattr(ev, name) is not None})
    task = spec.attribution.task
    attribution = dataclasses.replace(
        spec.attribution, task=f"{task.partition('@')[0]}@{_anchored(task.partition('@')[2], base)}" if "@" in task else task)
    models = tuple(
        m.model_copy(update={"pretrained": _anchored(m.pretrained, base)})
        if m.pretrained and m.pretrained.endswith(CHECKPOINT_SUFFIXES) else _anchor_hf_folder(m, base)
        for m in spec.models
    )
    return spec.model_copy(update={
        "out": absolute(spec.out),
        "cache_dir": absolute(spec.cache_dir),
        "pool": spec.pool if spec.pool in named_pools() else _anchored(spec.pool, base),
        "probe": dataclasses.replace(spec.probe, images=_anchor_images(spec.probe.images, base)),
        "models": models,
        "evaluation": evaluation,
        "attribution": attribution,
    })


def load_spec(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> JobSpec:
    """Read and validate a YAML job spec: a shipped spec's name or a file (default: the offline demo)."""
    path = find_spec(path)
    try:
        text, found = _protect(path.read_text(encoding="utf-8"))
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or ""
        what = f": {problem}" if "given twice" in problem else ""
        raise UserError(f"job spec {path} is not valid YAML{where}{what}: fix the syntax") from e
    data = _expand_values(data, found)
    if not isinstance(data, dict):
        raise UserError(f"job spec {path} must be a YAML mapping with at least run: and models:")
    data.update(overrides or {})
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as e:
        raise UserError(_explain(e, str(path))) from e
    return _anchor_paths(spec, path.resolve().parent)
