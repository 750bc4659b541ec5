"""``benchmark_heads``: per head, its plan beside both ground truths and the method's label and scores.

Ground truth 1 is eta^2 (:mod:`ccs_dist.toy.ground_truth`): ``eta2_factor`` (the highest-share factor),
``eta2`` (its share) and ``eta2_baseline``, the share of the same factor on the same head of the random-init
model of the same architecture in the run (null without one). Ground truth 2 is direct-path ablation
(:mod:`.direct`): ``ablation_factor`` is the task whose top-1 drops most when only the head's direct term is
removed, ``ablation_drop`` that drop (a fraction; the factor is null when no task drops).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from ccs_dist.core.heads import parse_head_name
from ccs_dist.artifacts.schemas import BENCHMARK_HEADS_SCHEMA as HEADS_SCHEMA
from ccs_dist.benchmark.direct import HEAD_PREFIX, NONE
from ccs_dist.benchmark.plans import plan_factor
from ccs_dist.benchmark.worlds import TASK_PREFIXES, task_factor
from ccs_dist.ccs.head_sets import label_families
from ccs_dist.toy.ground_truth import probe_factors
from ccs_dist.toy.outcomes import weighted_ccs

HEAD = ["model", "layer", "head"]


def top1(direct: pl.DataFrame) -> dict[tuple[str, str, str, int | None], float]:
    """(model, task, condition, seed) -> top-1 as a fraction, benchmark-world tasks only."""
    on_world = pl.any_horizontal([pl.col("task").str.starts_with(p) for p in TASK_PREFIXES])
    rows = direct.filter((pl.col("metric") == "top1") & on_world)
    return {(r["model"], r["task"], r["condition"], r["seed"]): r["value"] / 100.0 for r in rows.iter_rows(named=True)}


def ablation_factors(direct: pl.DataFrame) -> dict[tuple[str, int, int], tuple[str, float]]:
    """(model, layer, head) -> (the world's factor whose task drops most without the head's direct term, the drop)."""
    acc = top1(direct)
    out: dict[tuple[str, int, int], tuple[str, float]] = {}
    for (model, task, cond, _), value in acc.items():
        if not cond.startswith(HEAD_PREFIX) or (model, task, NONE, None) not in acc:
            continue
        layer, head = parse_head_name(cond[len(HEAD_PREFIX):])
        drop = acc[(model, task, NONE, None)] - value
        best = out.get((model, layer, head))
        if best is None or drop > best[1]:
            out[(model, layer, head)] = (task_factor(task), drop)
    # a head whose removal lowers no task names no factor (the drop stays, the factor is None)
    return {k: (f if d > 0 else None, d) for k, (f, d) in out.items()}


def benchmark_heads(plan: pl.DataFrame, ground_truth: pl.DataFrame, direct: pl.DataFrame, ccs: pl.DataFrame,
                    spans: pl.DataFrame, judgments: pl.DataFrame, concept_map: Mapping[str, Sequence[str]],
                    baselines: Mapping[str, str]) -> pl.DataFrame:
    """One row per planned head (``baselines``: model -> its random-init model in the run)."""
    factors = set(ground_truth["factor"].unique().to_list())
    probe = {(r["model"], r["layer"], r["head"]): r for r in probe_factors(ground_truth).iter_rows(named=True)}
    share = {(r["model"], r["layer"], r["head"], r["factor"]): r["variance_share"] for r in ground_truth.iter_rows(named=True)}
    ablation = ablation_factors(direct)
    scored = ccs.select(HEAD + ["label", "ccs"]).join(weighted_ccs(spans, judgments), on=HEAD, how="left")
    scores = {(r["model"], r["layer"], r["head"]): r for r in scored.iter_rows(named=True)}
    rows = []
    for p in plan.sort(HEAD).iter_rows(named=True):
        key = (p["model"], p["layer"], p["head"])
        gt, abl, sc = probe.get(key), ablation.get(key), scores.get(key, {})
        label = sc.get("label")
        eta2_factor = gt["probe_factor"] if gt else None
        base = baselines.get(p["model"])
        rows.append({
            "model": p["model"], "layer": p["layer"], "head": p["head"], "kind": p["kind"], "plan_factors": p["factors"],
            "plan_weights": list(p["weights"] or []), "plan_factor": plan_factor(p["factors"], p["weights"]),
            "expected": p["expected"], "eta2_factor": eta2_factor, "eta2": gt["variance_share"] if gt else None,
            "eta2_baseline": share.get((base, p["layer"], p["head"], eta2_factor)) if base else None,
            "ablation_factor": abl[0] if abl else None, "ablation_drop": abl[1] if abl else None,
            "label": label, "label_factors": ",".join(f for f in label_families(label or "", concept_map) if f in factors),
            "ccs": None if sc.get("ccs") is None else float(sc["ccs"]), "ccs_weighted": sc.get("ccs_weighted"),
        })
    return pl.DataFrame(rows, schema=HEADS_SCHEMA)
