"""The run-level step: ``benchmark_heads`` and ``benchmark_checks`` from a run's tables and a plan.

Run-level (like ``toy_outcomes``) because the checks of one model read another: eta^2 is set beside the
random-init model of the same architecture, and the seeds of a plan family are different models of one run.
Needs ``ground_truth`` (a ``toy:N`` probe set), ``direct_ablation`` (the chain's ``direct`` stage), ``ccs``,
``spans`` and ``judgments``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from ccs_dist.benchmark.checks import CHECKS_SCHEMA, ground_truth_rows, label_recovery_rows, outcome2_rows, pruning_rows, seed_rows
from ccs_dist.benchmark.config import BenchmarkConfig
from ccs_dist.benchmark.heads import benchmark_heads
from ccs_dist.benchmark.plans import plans_for_run, planted_v2_plan
from ccs_dist.ccs.head_sets import load_concept_map
from ccs_dist.core.errors import UserError
from ccs_dist.data.toy.world import FACTOR_NAMES

NEEDED = ("ground_truth", "direct_ablation", "ccs", "spans", "judgments")


def benchmark_tables(tables: Mapping[str, pl.DataFrame], random_init: Mapping[str, bool], plan: pl.DataFrame | None = None,
                     config: BenchmarkConfig = BenchmarkConfig(),
                     concept_map: Mapping[str, Sequence[str]] | None = None) -> dict[str, pl.DataFrame]:
    """``plan``: the plan table (default: the planted_v2 plan); ``random_init``: model -> whether random init."""
    missing = [t for t in NEEDED if t not in tables]
    if missing:
        raise UserError(f"the benchmark needs the table(s) {', '.join(missing)}: run a job with a toy:N probe set and "
                        "toy-<factor> evaluation tasks")
    cmap = dict(concept_map) if concept_map is not None else load_concept_map()
    models = tables["ccs"]["model"].unique(maintain_order=True).to_list()
    plan = plans_for_run(planted_v2_plan() if plan is None else plan, models, random_init)
    baselines = {m: next((r for r in models if random_init.get(r) and r.split("/")[0] == m.split("/")[0]), None)
                 for m in models if not random_init.get(m)}
    heads = benchmark_heads(plan, tables["ground_truth"], tables["direct_ablation"], tables["ccs"], tables["spans"],
                            tables["judgments"], cmap, {m: b for m, b in baselines.items() if b})
    gt_factors = set(tables["ground_truth"]["factor"].unique().to_list())
    factors = [f for f in FACTOR_NAMES if f in gt_factors]
    rows: list[dict] = []
    for model in heads["model"].unique(maintain_order=True).to_list():
        mine = heads.filter(pl.col("model") == model)
        rows += ground_truth_rows(model, mine, config)
        rows += outcome2_rows(model, mine, config)
        rows += label_recovery_rows(model, mine, factors, config)
        rows += pruning_rows(model, tables["direct_ablation"], factors, config)
    checks = pl.DataFrame(rows, schema=CHECKS_SCHEMA)
    trained = [m for m in heads["model"].unique().to_list() if not random_init.get(m)]
    return {"benchmark_heads": heads, "benchmark_checks": pl.concat([checks, seed_rows(checks, trained)])}
