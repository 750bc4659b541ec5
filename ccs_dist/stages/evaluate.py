"""Evaluate stage: build the head sets from the ccs table, soft-prune each and evaluate it on every task
(one pass over each task's data serves every head set). The job spec section ``evaluation`` is
:class:`EvaluateConfig`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import polars as pl
from pydantic import Field

from ccs_dist.errors import UserError
from ccs_dist.evaluate.run import EvalConfig, evaluate
from ccs_dist.models.loading import LoadedModel
from ccs_dist.head_sets import ALL_CONDITIONS, HeadSet, HeadSetConfig, build_head_sets, load_concept_map
from ccs_dist.stages.config import StageConfig
from ccs_dist.store import atomic_write_json, read_json

log = logging.getLogger(__name__)

EVALUATION_SCHEMA = {"model": pl.Utf8, "task": pl.Utf8, "condition": pl.Utf8, "seed": pl.Int64, "n_pruned": pl.Int64,
                     "metric": pl.Utf8, "value": pl.Float64}


class EvaluateConfig(StageConfig):
    """Which head sets, which tasks, how (job spec section ``evaluation``)."""

    tasks: tuple[str, ...] = ()
    data_root: str | None = None  # required for real datasets; synthetic ones default to CACHE_DIR/synthetic-data
    synthetic: bool = False  # write synthetic datasets in the real formats into data_root first
    conditions: tuple[str, ...] = ALL_CONDITIONS
    seeds: tuple[int, ...] = HeadSetConfig.seeds
    concepts: tuple[str, ...] | None = None
    concept_map: str | None = None  # JSON file {family: [synonym, ...]} replacing the default label -> family map
    heads: dict[str, str] = {}  # explicit lists: name -> "L11.H5,L10.H8"
    batch_size: int = Field(EvalConfig.batch_size, ge=1)
    workers: int = Field(EvalConfig.num_workers, ge=0)  # data-loading processes
    limit: int | None = Field(None, ge=1)
    templates_per_class: int | None = Field(None, ge=1)
    frames: int | None = Field(None, ge=1)
    caption_mode: Literal["first", "all"] = EvalConfig.caption_mode
    k: int = Field(EvalConfig.k, ge=1)
    occupations: str | None = None
    ablation: Literal["zero", "mean"] = EvalConfig.ablation
    download: bool = False
    min_stability: float | None = Field(None, ge=0, le=1)  # heads less span-stable join no CCS-based head set
    concept_heads: Literal["any", "high"] = HeadSetConfig.concept_heads  # high: a concept's high-CCS heads only (the paper)
    random_layers: Literal["scored", "all", "reference"] = HeadSetConfig.random_layers
    video_pooling: Literal["renormalised", "mean"] = EvalConfig.video_pooling  # mean: the paper's code
    class_names: Literal["standard", "paper"] = EvalConfig.class_names  # paper: the reference code's class names
    bias_templates: Literal["standard", "paper"] = EvalConfig.bias_templates  # paper: the reference's four templates
    bias_ranking: Literal["global", "per_occupation"] = EvalConfig.bias_ranking  # per_occupation: as the paper

    def head_set_config(self) -> HeadSetConfig:
        return HeadSetConfig(conditions=self.conditions, seeds=self.seeds, concepts=self.concepts,
                             concept_map=load_concept_map(self.concept_map) if self.concept_map else None,
                             explicit=tuple(self.heads.items()), min_stability=self.min_stability,
                             concept_heads=self.concept_heads, random_layers=self.random_layers)

    def eval_config(self, *, data_root: str | Path, progress: bool) -> EvalConfig:
        return EvalConfig(
            data_root=Path(data_root), batch_size=self.batch_size, num_workers=self.workers, limit=self.limit,
            download=self.download, frames=self.frames, caption_mode=self.caption_mode, k=self.k,
            occupations=Path(self.occupations) if self.occupations else None, ablation=self.ablation,
            templates_per_class=self.templates_per_class, progress=progress, video_pooling=self.video_pooling,
            class_names=self.class_names, bias_templates=self.bias_templates, bias_ranking=self.bias_ranking,
        )


@dataclass(frozen=True)
class EvaluateResult:
    table: pl.DataFrame  # EVALUATION_SCHEMA
    head_sets: tuple[HeadSet, ...]
    seconds: float


def evaluate_stage(loaded: LoadedModel, ccs: pl.DataFrame | None, config: EvaluateConfig, *, data_root: str | Path,
                   progress: bool) -> EvaluateResult:
    """Every head set on every task; no tasks: an empty table."""
    if not config.tasks:
        return EvaluateResult(pl.DataFrame(schema=EVALUATION_SCHEMA), (), 0.0)
    t0 = time.perf_counter()
    head_sets = build_head_sets(ccs, loaded.key, loaded.num_layers, loaded.num_heads, config.head_set_config())
    if not head_sets:
        raise UserError("no head sets: give conditions and/or explicit head lists (--conditions, --heads)")
    log.info("head sets: %s", ", ".join(f"{h.condition}{'' if h.seed is None else f'[{h.seed}]'}({h.n_pruned})" for h in head_sets))
    table = evaluate(loaded, list(config.tasks), head_sets, config.eval_config(data_root=data_root, progress=progress))
    return EvaluateResult(table, tuple(head_sets), time.perf_counter() - t0)


def prepare_synthetic_data(tasks: list[str] | tuple[str, ...], data_root: Path) -> None:
    """Write the synthetic datasets of ``tasks`` (the real on-disk formats) once into ``data_root``."""
    if not tasks:
        return
    from ccs_dist.data.synthetic import write_all

    marker = data_root / "synthetic.json"
    wanted = sorted({t.partition("@")[0] for t in tasks})
    if marker.is_file() and read_json(marker).get("tasks") == wanted:
        return
    write_all(data_root, wanted)
    atomic_write_json(marker, {"tasks": wanted})
