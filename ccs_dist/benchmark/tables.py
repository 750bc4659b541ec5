"""The run-level step: ``benchmark_heads`` and ``benchmark_checks`` from a run's tables and a plan.

Run-level (like ``toy_outcomes``) because the checks of one model read another: eta^2 is set beside the
random-init model of the same architecture, and the seeds of a plan family are different models of one run.
The world (toy or plant, :mod:`.worlds`) is the one of the ground truth's factors unless given; its factors,
task prefix and concept map are used throughout. Needs ``ground_truth`` (a ``toy:N`` or ``plant:N`` probe set), ``direct_ablation`` (the chain's ``direct`` stage), ``ccs``,
``spans`` and ``judgments``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from ccs_dist.benchmark.checks import CHECKS_SCHEMA, ground_truth_rows, label_recovery_rows, outcome2_rows, pruning_rows, seed_rows
from ccs_dist.benchmark.config import BenchmarkConfig
from ccs_dist.benchmark.heads import benchmark_heads
from ccs_dist.benchmark.plans import plans_for_run, planted_v2_plan
from ccs_dist.benchmark.worlds import World, check_world, world_of_factors
from ccs_dist.core.errors import UserError

NEEDED = ("ground_truth", "direct_ablation", "ccs", "spans", "judgments")


def benchmark_tables(tables: Mapping[str, pl.DataFrame], random_init: Mapping[str, bool], plan: pl.DataFrame | None = None,
                     config: BenchmarkConfig = BenchmarkConfig(),
                     concept_map: Mapping[str, Sequence[str]] | None = None, world: World | None = None) -> dict[str, pl.DataFrame]:
    """``plan``: the plan table (default: the planted_v2 plan); ``random_init``: model -> whether random init;
    ``world``: the run's world (default: told by the ground truth's factors; a mismatch is a UserError)."""
    missing = [t for t in NEEDED if t not in tables]
    if missing:
        raise UserError(f"the benchmark needs the table(s) {', '.join(missing)}: run a job with a toy:N probe set and "
                        "toy-<factor> evaluation tasks (or plant:N and plant-<factor>)")
    gt_factors = set(tables["ground_truth"]["factor"].unique().to_list())
    world = check_world(world or world_of_factors(gt_factors), gt_factors, tables["direct_ablation"]["task"].unique().to_list())
    cmap = dict(concept_map) if concept_map is not None else world.concept_map()
    models = tables["ccs"]["model"].unique(maintain_order=True).to_list()
    plan = plans_for_run(planted_v2_plan() if plan is None else plan, models, random_init)
    baselines = {m: next((r for r in models if random_init.get(r) and r.split("/")[0] == m.split("/")[0]), None)
                 for m in models if not random_init.get(m)}
    heads = benchmark_heads(plan, tables["ground_truth"], tables["direct_ablation"], tables["ccs"], tables["spans"],
                            tables["judgments"], cmap, {m: b for m, b in baselines.items() if b})
    factors = [f for f in world.factors if f in gt_factors]
    rows: list[dict] = []
    for model in heads["model"].unique(maintain_order=True).to_list():
        mine = heads.filter(pl.col("model") == model)
        rows += ground_truth_rows(model, mine, config)
        rows += outcome2_rows(model, mine, config)
        rows += label_recovery_rows(model, mine, factors, config)
        rows += pruning_rows(model, tables["direct_ablation"], factors, config, world.task_prefix)
    checks = pl.DataFrame(rows, schema=CHECKS_SCHEMA)
    trained = [m for m in heads["model"].unique().to_list() if not random_init.get(m)]
    return {"benchmark_heads": heads, "benchmark_checks": pl.concat([checks, seed_rows(checks, trained)])}
