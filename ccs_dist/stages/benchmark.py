"""Direct stage: the planted-concept benchmark's ground truth 2 for one model (``direct_ablation``).

Runs when the probe set is ``toy:N`` (``plant:N``) and the evaluation has ``toy-<factor>`` (``plant-<factor>``) tasks: every head's direct term,
and the tested head sets with their matched random sets, removed from each task image's embedding
(:mod:`ccs_dist.benchmark.direct`). The checks themselves are run-level (:mod:`ccs_dist.benchmark.tables`).
"""

from __future__ import annotations

import dataclasses

from dataclasses import asdict
from pathlib import Path

import polars as pl

from ccs_dist.artifacts.run_dir import RunDir
from ccs_dist.artifacts.schemas import PLAN_SCHEMA, write_table
from ccs_dist.benchmark.config import BenchmarkConfig
from ccs_dist.benchmark.direct import direct_ablation
from ccs_dist.benchmark.plans import run_plan
from ccs_dist.benchmark.tables import benchmark_tables
from ccs_dist.benchmark.worlds import world_of_probe
from ccs_dist.core.errors import UserError
from ccs_dist.models.loading import LoadedModel
from ccs_dist.report.load import load_run
from ccs_dist.evaluate.config import EvalConfig
from ccs_dist.stages.config import dump

BENCHMARK = BenchmarkConfig()  # a job's run uses the defaults; ``ccs-dist benchmark`` recomputes the checks with others


def direct_enabled(probe_images: str, evaluation: EvalConfig) -> bool:
    world = world_of_probe(probe_images)
    return world is not None and bool(world.tasks(evaluation.tasks))


def direct_key(evaluation: EvalConfig, probe_images: str = "toy:") -> dict:
    """What the table depends on: the world's tasks and how they are read, the concept map, the null sets' draw."""
    ev = {k: v for k, v in dump(evaluation).items() if k in ("data_root", "synthetic", "concept_map", "batch_size", "limit",
                                                             "templates_per_class", "class_names", "download")}
    world = world_of_probe(probe_images)
    return {"tasks": list(world.tasks(evaluation.tasks) if world else ()), "evaluation": ev,
            "benchmark": {k: v for k, v in asdict(BENCHMARK).items() if k in ("null_sets", "seed")}}


def direct_stage(loaded: LoadedModel, ccs: pl.DataFrame, evaluation: EvalConfig, *, data_root: str | Path,
                 progress: bool, probe_images: str = "toy:") -> pl.DataFrame:
    world = world_of_probe(probe_images)
    if world is None:
        raise UserError(f"probe set {probe_images!r}: the direct stage needs toy:N or plant:N probe images")
    return direct_ablation(loaded, ccs, evaluation.tasks, dataclasses.replace(evaluation, data_root=str(data_root), progress=progress),
                           world.concept_map(evaluation.concept_map), BENCHMARK, world)


def benchmark_run(run_dir: str | Path, config: BenchmarkConfig = BENCHMARK, plan: str | Path | None = None) -> pl.DataFrame:
    """Recompute a finished run's ``benchmark_heads`` / ``benchmark_checks`` (written to RUN_DIR/tables) -> the checks."""
    data = load_run(run_dir)
    random_init = {m["model"]: bool(m.get("random_init")) for m in data.manifest.get("models", [])}
    if not random_init:
        raise UserError(f"{run_dir}/manifest.json lists no models: point at the output directory of a job run")
    out = benchmark_tables(data.tables, random_init, read_plan(plan) if plan else run_plan(list(random_init)), config)
    layout = RunDir(Path(run_dir))
    for name, df in out.items():
        write_table(df, layout.table(name), {"benchmark": asdict(config), "plan": str(plan) if plan else "built-in"})
    return out["benchmark_checks"]


def read_plan(path: str | Path) -> pl.DataFrame:
    """A plan table from parquet (its ``weights`` column is a list)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".parquet":
        raise UserError(f"plan {path}: give a parquet file with the plan table's columns ({', '.join(PLAN_SCHEMA)})")
    return pl.read_parquet(path)
