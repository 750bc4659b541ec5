"""The stage chain of one model, written once: order, inputs, resume keys and how each stage runs.

``spans`` (decompose + TextSpan) -> ``score`` (labels, verdicts, CCS) -> ``evaluate`` (soft-pruned tasks)
and, when enabled, ``direct`` (the benchmark's direct-path ablation, with a toy probe set and toy tasks),
``attribution`` and ``card`` (image-grounded head scores). A stage reads named tables of earlier stages (:class:`TableRef`) and
returns named tables and facts (:class:`StageOutput`); its key hashes the configuration it depends on and
its input tables, so a changed input recomputes it and everything downstream. Local mode
(:mod:`ccs_dist.jobs.pipeline`) and the Ray actors (:mod:`ccs_dist.distributed`) both walk :data:`CHAIN`
and run a stage with :func:`run_stage`; neither knows what a stage does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from ccs_dist.models.loading import LoadedModel
from ccs_dist.attribution.run import AttributionConfig
from ccs_dist.card.config import CardConfig
from ccs_dist.stages.card import card_stage
from ccs_dist.stages.attribution import attribution_stage
from ccs_dist.stages.benchmark import direct_enabled, direct_key, direct_stage
from ccs_dist.stages.config import dump
from ccs_dist.stages.config import replace as replace_config
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.spans.table import SpanConfig
from ccs_dist.stages.decompose import Layers
from ccs_dist.evaluate.config import EvalConfig
from ccs_dist.stages.evaluate import ShardFolder, evaluate_shard, evaluate_stage, evaluation_shards
from ccs_dist.stages.model import ModelSpec
from ccs_dist.llm.config import ScoreConfig
from ccs_dist.llm.gold import gold_fingerprint
from ccs_dist.llm.offline import vocabulary_fingerprint
from ccs_dist.stages.score import SCORE_TABLES, score_stage
from ccs_dist.stages.spans import ground_truth_table, head_image_tables_of, spans_probe_shard, spans_stage
from ccs_dist.artifacts.store import ArtifactStore, content_key
from ccs_dist.artifacts.storage import local_dir
from ccs_dist.stages.sources import labeler_vocabulary, resolve_pool

STAGE_VERSION = 1  # bump to recompute every stage of older runs


@dataclass(frozen=True)
class ChainConfig:
    """Everything one model's chain needs (a job spec gives one per model: ``JobSpec.chain_config``)."""

    model: ModelSpec
    layers: Layers
    probe: DecomposeConfig
    pool: str
    spans: SpanConfig
    llm: ScoreConfig
    evaluation: EvalConfig
    attribution: AttributionConfig
    cache_dir: str  # a local path or a remote root's URI (ccs_dist.artifacts.storage)
    data_root: str
    card: CardConfig = CardConfig()

    @property
    def key(self) -> str:
        return self.model.key


@dataclass(frozen=True)
class TableRef:
    stage: str
    table: str


@dataclass(frozen=True)
class StageOutput:
    tables: dict[str, pl.DataFrame]
    facts: dict[str, Any] = field(default_factory=dict)  # recorded in the stage's manifest


@dataclass(frozen=True)
class StageContext:
    """Where a stage runs: its model's chain config, the loaded model (None for stages that use none)."""

    config: ChainConfig
    loaded: LoadedModel | None
    progress: bool


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[TableRef, ...]
    uses_model: bool
    key_parts: Callable[[ChainConfig], dict[str, Any]]  # the configuration its output depends on
    run: Callable[[StageContext, Mapping[TableRef, pl.DataFrame]], StageOutput]
    enabled: Callable[[ChainConfig], bool] = lambda config: True
    # A stage whose model work splits into shards: how many, and how one is done ahead of the stage (which
    # then merges them). Any worker holding the model may take a shard; local mode leaves them to the stage.
    shards: Callable[[ChainConfig], int] = lambda config: 1
    run_shard: Callable[[StageContext, int, Mapping[TableRef, pl.DataFrame]], dict[str, Any]] | None = None

    def key(self, config: ChainConfig, inputs: Mapping[TableRef, pl.DataFrame]) -> str:
        return content_key({"v": STAGE_VERSION, "stage": self.name, **self.key_parts(config),
                            "inputs": {f"{r.stage}.{r.table}": frame_hash(df) for r, df in inputs.items()}})


def frame_hash(df: pl.DataFrame) -> str:
    """Content hash of a table (row order and values), the input key of downstream stages."""
    h = hashlib.sha256(json.dumps(df.columns).encode())
    h.update(df.hash_rows(seed=0).to_numpy().tobytes())
    return h.hexdigest()[:24]


# -- the stages ------------------------------------------------------------------------------------------

SPANS, CCS, JUDGMENTS = TableRef("spans", "spans"), TableRef("score", "ccs"), TableRef("score", "judgments")


def _model_facts(c: ChainConfig) -> dict[str, Any]:
    return {"arch": c.model.arch, "pretrained": c.model.pretrained}


def _spans_key(c: ChainConfig) -> dict[str, Any]:
    probe = dump(c.probe)
    if c.probe.shards == 1:  # keys from before shards
        del probe["shards"]
    return {"model": _model_facts(c), "layers": c.layers, "probe": probe,
            "pool": resolve_pool(c.pool, c.cache_dir).content_hash, "spans": dump(c.spans),
            "precision": c.model.precision}


def _score_key(c: ChainConfig) -> dict[str, Any]:
    llm = dump(c.llm)
    del llm["min_scored_share"]  # a pass/fail rule over the same answers and tables: not part of what is computed
    if llm["offline_verdict"] == "threshold":  # the rule of earlier releases: their keys stay valid for it
        del llm["offline_verdict"]
    if llm["judge_gold_pairs"] == 0:  # no judge validation: what earlier releases computed
        del llm["judge_gold_pairs"]
    key: dict[str, Any] = {"llm": llm}
    if c.llm.backend == "offline":
        key["offline_vocabulary"] = vocabulary_fingerprint(extra=labeler_vocabulary(c.pool))
    if c.llm.judge_gold_pairs:
        key["judge_gold"] = gold_fingerprint()
    return key


def _run_spans(ctx: StageContext, inputs) -> StageOutput:
    c = ctx.config
    result = spans_stage(ctx.loaded, probe=c.probe, layers=c.layers, pool=c.pool, spans=c.spans, cache_dir=c.cache_dir,
                         progress=ctx.progress)
    tables = {"spans": result.table, **head_image_tables_of(ctx.loaded, result, c.probe, c.cache_dir)}
    truth = ground_truth_table(ctx.loaded, result, c.probe, c.cache_dir)
    if truth is not None:
        tables["ground_truth"] = truth
    return StageOutput(tables, {"metadata": result.metadata})


def _run_spans_shard(ctx: StageContext, index: int, inputs) -> dict[str, Any]:
    c = ctx.config
    return spans_probe_shard(ctx.loaded, index, probe=c.probe, layers=c.layers, spans=c.spans, cache_dir=c.cache_dir)


def llm_cache_dir(cache_dir: str) -> Path:
    """The LLM answer cache (SQLite: never on object storage): ``CACHE/llm``, or with a remote cache root its
    node-local mirror's ``llm`` folder on the node that runs the score stage (the driver's, in Ray mode)."""
    return local_dir(cache_dir) / "llm"


def _run_score(ctx: StageContext, inputs) -> StageOutput:
    c = ctx.config
    config = replace_config(c.llm, cache_dir=str(llm_cache_dir(c.cache_dir)), show_progress=ctx.progress,
                            offline_vocabulary_extra=labeler_vocabulary(c.pool))
    result = score_stage(inputs[SPANS], config)
    return StageOutput({name: getattr(result, name) for name in SCORE_TABLES}, {"llm": dict(result.stats)})


def _evaluate_key(c: ChainConfig) -> dict[str, Any]:  # shards change where rows are computed, not the table
    evaluation = dump(c.evaluation)
    del evaluation["shards"]
    return {"model": _model_facts(c), "evaluation": evaluation}


def _evaluation_shard_dir(c: ChainConfig, inputs) -> ShardFolder:
    """Where the shards of this evaluation wait for the merge: keyed like the stage, so any worker finds them."""
    return ShardFolder(ArtifactStore(c.cache_dir), BY_NAME["evaluate"].key(c, inputs))


def _run_evaluate(ctx: StageContext, inputs) -> StageOutput:
    c = ctx.config
    result = evaluate_stage(ctx.loaded, inputs[CCS], c.evaluation, data_root=c.data_root, progress=ctx.progress,
                            shard_dir=_evaluation_shard_dir(c, inputs))
    facts = {"head_sets": len(result.head_sets), "seconds": round(result.seconds, 3)} if c.evaluation.tasks else {}
    return StageOutput({"evaluation": result.table}, facts)


def _run_evaluate_shard(ctx: StageContext, index: int, inputs) -> dict[str, Any]:
    c = ctx.config
    return evaluate_shard(ctx.loaded, inputs[CCS], c.evaluation, index, data_root=c.data_root,
                          shard_dir=_evaluation_shard_dir(c, inputs))


def _run_direct(ctx: StageContext, inputs) -> StageOutput:
    c = ctx.config
    table = direct_stage(ctx.loaded, inputs[CCS], c.evaluation, data_root=c.data_root, progress=ctx.progress,
                         probe_images=c.probe.images)
    return StageOutput({"direct_ablation": table}, {"rows": table.height})


def _run_attribution(ctx: StageContext, inputs) -> StageOutput:
    c = ctx.config
    result = attribution_stage(ctx.loaded, inputs[CCS], c.attribution, data_root=c.data_root, progress=ctx.progress)
    return StageOutput(result.tables, {"attribution": result.meta})


def _card_key(c: ChainConfig) -> dict[str, Any]:
    key = {"model": _model_facts(c), "card": dump(c.card), "probe": dump(c.probe), "layers": c.layers,
           "precision": c.spans.precision}
    if c.card.tasks:
        key["evaluation"] = _evaluate_key(c)["evaluation"]
    if c.card.resamples:  # the resamples rerun TextSpan and the scoring
        key.update(_spans_key(c), score=_score_key(c))
    return key


def _run_card(ctx: StageContext, inputs) -> StageOutput:
    c = ctx.config
    llm = replace_config(c.llm, cache_dir=str(llm_cache_dir(c.cache_dir)), show_progress=False)
    result = card_stage(ctx.loaded, inputs[SPANS], inputs[CCS], inputs[JUDGMENTS], c.card, probe=c.probe, layers=c.layers,
                        spans=c.spans, pool=c.pool, llm=llm, cache_dir=c.cache_dir, progress=ctx.progress,
                        eval_config=replace(c.evaluation, data_root=c.data_root, progress=False),
                        concept_map=c.evaluation.concept_map)
    return StageOutput(result.tables, {"card": result.facts})


CHAIN: tuple[Stage, ...] = (
    Stage("spans", (), True, _spans_key, _run_spans, shards=lambda c: c.probe.shards, run_shard=_run_spans_shard),
    Stage("score", (SPANS,), False, _score_key, _run_score),
    Stage("evaluate", (CCS,), True, _evaluate_key, _run_evaluate,
          shards=lambda c: evaluation_shards(c.evaluation), run_shard=_run_evaluate_shard),
    Stage("direct", (CCS,), True, lambda c: {"model": _model_facts(c), **direct_key(c.evaluation, c.probe.images)}, _run_direct,
          enabled=lambda c: direct_enabled(c.probe.images, c.evaluation)),
    Stage("attribution", (CCS,), True, lambda c: {"model": _model_facts(c), "attribution": dump(c.attribution)},
          _run_attribution, enabled=lambda c: c.attribution.enabled),
    Stage("card", (SPANS, CCS, JUDGMENTS), True, _card_key, _run_card, enabled=lambda c: c.card.enabled),
)
STAGES: tuple[str, ...] = tuple(s.name for s in CHAIN)
BY_NAME: dict[str, Stage] = {s.name: s for s in CHAIN}


def downstream(name: str) -> tuple[str, ...]:
    """``name`` and every stage that reads, directly or not, a table of it (what ``--force name`` recomputes)."""
    out = [name]
    for stage in CHAIN:
        if stage.name not in out and any(ref.stage in out for ref in stage.inputs):
            out.append(stage.name)
    return tuple(out)


def enabled_stages(config: ChainConfig) -> tuple[Stage, ...]:
    return tuple(s for s in CHAIN if s.enabled(config))


def inputs_of(stage: Stage, done: Mapping[str, StageOutput]) -> dict[TableRef, pl.DataFrame] | None:
    """The stage's input tables from the finished stages ``done``; None while one is missing."""
    if any(ref.stage not in done for ref in stage.inputs):
        return None
    return {ref: done[ref.stage].tables[ref.table] for ref in stage.inputs}


def next_stage(config: ChainConfig, done: Mapping[str, StageOutput]) -> Stage | None:
    """The first enabled stage not yet done (its inputs are then done: the chain is in dependency order)."""
    return next((s for s in enabled_stages(config) if s.name not in done), None)


def run_stage(name: str, ctx: StageContext, inputs: Mapping[TableRef, pl.DataFrame]) -> StageOutput:
    return BY_NAME[name].run(ctx, inputs)


class ModelRunner:
    """One model loaded once, running its chain's stages (in this process or inside a Ray actor)."""

    def __init__(self, config: ChainConfig, *, threads: int | None = None, progress: bool = True):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.context = StageContext(config, config.model.load(), progress)

    def run(self, name: str, inputs: Mapping[TableRef, pl.DataFrame]) -> StageOutput:
        return run_stage(name, self.context, inputs)

    def run_shard(self, name: str, index: int, inputs: Mapping[TableRef, pl.DataFrame]) -> dict[str, Any]:
        return BY_NAME[name].run_shard(self.context, index, inputs)
