"""Direct stage: the planted-concept benchmark's ground truth 2 for one model (``direct_ablation``).

Runs when the probe set is ``toy:N`` and the evaluation has ``toy-<factor>`` tasks: every head's direct term,
and the tested head sets with their matched random sets, removed from each task image's embedding
(:mod:`ccs_dist.benchmark.direct`). The checks themselves are run-level (:mod:`ccs_dist.benchmark.tables`).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import polars as pl

from ccs_dist.artifacts.run_dir import RunDir
from ccs_dist.artifacts.schemas import PLAN_SCHEMA, write_table
from ccs_dist.benchmark.config import BenchmarkConfig
from ccs_dist.benchmark.direct import direct_ablation, toy_tasks
from ccs_dist.benchmark.tables import benchmark_tables
from ccs_dist.ccs.head_sets import load_concept_map
from ccs_dist.core.errors import UserError
from ccs_dist.models.loading import LoadedModel
from ccs_dist.report.load import load_run
from ccs_dist.stages.evaluate import EvaluateConfig

BENCHMARK = BenchmarkConfig()  # a job's run uses the defaults; ``ccs-dist benchmark`` recomputes the checks with others


def direct_enabled(probe_images: str, evaluation: EvaluateConfig) -> bool:
    return str(probe_images).startswith("toy:") and bool(toy_tasks(evaluation.tasks))


def direct_key(evaluation: EvaluateConfig) -> dict:
    """What the table depends on: the toy tasks and how they are read, the concept map, the null sets' draw."""
    ev = evaluation.model_dump(mode="json", include={"data_root", "synthetic", "concept_map", "batch_size", "limit",
                                                     "templates_per_class", "class_names", "download"})
    return {"tasks": list(toy_tasks(evaluation.tasks)), "evaluation": ev,
            "benchmark": {k: v for k, v in asdict(BENCHMARK).items() if k in ("null_sets", "seed")}}


def direct_stage(loaded: LoadedModel, ccs: pl.DataFrame, evaluation: EvaluateConfig, *, data_root: str | Path,
                 progress: bool) -> pl.DataFrame:
    cmap = load_concept_map(evaluation.concept_map) if evaluation.concept_map else load_concept_map()
    return direct_ablation(loaded, ccs, evaluation.tasks, evaluation.eval_config(data_root=data_root, progress=progress),
                           cmap, BENCHMARK)


def benchmark_run(run_dir: str | Path, config: BenchmarkConfig = BENCHMARK, plan: str | Path | None = None) -> pl.DataFrame:
    """Recompute a finished run's ``benchmark_heads`` / ``benchmark_checks`` (written to RUN_DIR/tables) -> the checks."""
    data = load_run(run_dir)
    random_init = {m["model"]: bool(m.get("random_init")) for m in data.manifest.get("models", [])}
    if not random_init:
        raise UserError(f"{run_dir}/manifest.json lists no models: point at the output directory of a job run")
    out = benchmark_tables(data.tables, random_init, read_plan(plan) if plan else None, config)
    layout = RunDir(Path(run_dir))
    for name, df in out.items():
        write_table(df, layout.table(name), {"benchmark": asdict(config), "plan": str(plan) if plan else "planted_v2"})
    return out["benchmark_checks"]


def read_plan(path: str | Path) -> pl.DataFrame:
    """A plan table from parquet (its ``weights`` column is a list)."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".parquet":
        raise UserError(f"plan {path}: give a parquet file with the plan table's columns ({', '.join(PLAN_SCHEMA)})")
    return pl.read_parquet(path)
