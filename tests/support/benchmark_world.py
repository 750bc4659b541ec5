"""A synthetic planted run for the benchmark's tests: the tables a job would write, built to pass or to fail.

Heads and plan are planted_v2's (12 mono heads, 4 free ones). In the "planted" world a mono head's direct
term carries its factor (eta^2 0.9 on it), removing it drops its factor's task by 0.3, its label names the
factor and it scores CCS 5; a free head carries nothing, lowers nothing, is labelled "crowds" and scores 1.
Knobs make the failures: ``labels`` (head -> label), ``truth`` (head -> the factor the ground truths see).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from ccs_dist.artifacts.schemas import EVALUATION_SCHEMA
from ccs_dist.benchmark.config import BenchmarkConfig
from ccs_dist.benchmark.direct import direct_head_sets
from ccs_dist.benchmark.plans import planted_v2_plan
from ccs_dist.core.heads import parse_head_name
from ccs_dist.data.toy.world import FACTOR_NAMES

MODEL = "ccs-toy/planted_v2"
LAYERS = HEADS = 4
CONCEPT_MAP = {f: (f,) for f in FACTOR_NAMES}
CONFIG = BenchmarkConfig(permutations=300, null_sets=100)


def planned() -> dict[tuple[int, int], str | None]:
    plan = planted_v2_plan(MODEL)
    return {(r["layer"], r["head"]): (r["factors"] or None) for r in plan.iter_rows(named=True)}


def world_tables(truth: Mapping[tuple[int, int], str | None] | None = None,
                 labels: Mapping[tuple[int, int], str] | None = None, model: str = MODEL) -> dict[str, pl.DataFrame]:
    truth = dict(planned() if truth is None else truth)
    labels = dict({k: (f or "crowds") for k, f in truth.items()} if labels is None else labels)
    gt, ccs, spans, judgments = [], [], [], []
    for (l, h), f in sorted(truth.items()):
        for g in FACTOR_NAMES:
            share = 0.9 if g == f else 0.02
            gt.append({"model": model, "layer": l, "head": h, "factor": g, "variance_share": share, "selectivity": share})
        score = 5 if labels[(l, h)] in FACTOR_NAMES else 1
        ccs.append({"model": model, "layer": l, "head": h, "label": labels[(l, h)], "ccs": score})
        for rank in range(1, 6):
            spans.append({"model": model, "layer": l, "head": h, "rank": rank, "text": f"line {rank}", "variance": 1.0})
            judgments.append({"model": model, "layer": l, "head": h, "rank": rank, "text": f"line {rank}",
                              "label": labels[(l, h)], "aligned": rank <= score, "judge": "test", "error": None})
    ccs_df = pl.DataFrame(ccs)
    return {"ground_truth": pl.DataFrame(gt), "ccs": ccs_df, "spans": pl.DataFrame(spans),
            "judgments": pl.DataFrame(judgments), "direct_ablation": direct_rows(ccs_df, truth, model)}


def direct_rows(ccs: pl.DataFrame, truth: Mapping[tuple[int, int], str | None], model: str) -> pl.DataFrame:
    """Top-1 of every head set the direct stage would evaluate: each removed head carrying factor f lowers
    the f task by 0.3 (from 100 %)."""
    sets = direct_head_sets(ccs, model, LAYERS, HEADS, FACTOR_NAMES, CONCEPT_MAP, CONFIG)
    rows = []
    for hs in sets:
        carried = [truth.get(parse_head_name(n)) for n in hs.heads]
        for f in FACTOR_NAMES:
            value = 100.0 * max(0.0, 1.0 - 0.3 * carried.count(f))
            rows.append({"model": model, "task": f"toy-{f}", "condition": hs.condition, "seed": hs.seed,
                         "n_pruned": hs.n_pruned, "metric": "top1", "value": value})
    return pl.DataFrame(rows, schema=EVALUATION_SCHEMA)
