"""The method against the toy world's ground truth: per-head comparison and the four outcomes of a run.

``toy_heads``: per head, the probe factor (highest variance share, :mod:`ccs_dist.toy.ground_truth`), the
label, the factors the label names (through the concept map), CCS and the variance-weighted CCS, and the
factor training planted in the head (:mod:`ccs_dist.toy.planted`; for the bundled ``ccs-toy`` weights only,
empty elsewhere): shown beside the measured probe factor, never used in place of it.
``toy_outcomes``: one row per check, whatever the numbers are:

1. the model learned: zero-shot top-1 on every ``toy-<factor>`` task (target >= 0.9);
2. CCS agrees with ground truth: of the heads with CCS >= 4, the share whose label names their probe
   factor (aim >= 0.8), and the Spearman correlation between CCS and the probe factor's selectivity;
3. concept pruning is specific: pruning ``concept:<factor>`` lowers top-1 on ``toy-<factor>`` more than
   the mean drop on the other toy tasks (checked where the concept set has >= 2 heads);
4. pruning high-CCS heads lowers mean toy top-1 more than pruning low-CCS heads and random heads (mean
   over the random seeds).

The variance-weighted CCS is ``5 * sum(aligned * variance) / sum(variance)`` over a head's spans: a binary
factor is spanned by one or two descriptions that carry nearly all of the head's variance, and a count out
of 5 undercounts such a head. Outcome 2 is computed with both scores; the weighted one is the headline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from ccs_dist.ccs.scores import majority_verdicts, spearman_rho
from ccs_dist.data.toy.scenes import TASK_PREFIX
from ccs_dist.toy.ground_truth import probe_factors
from ccs_dist.ccs.head_sets import label_families, load_concept_map
from ccs_dist.data.toy.world import FACTOR_NAMES
from ccs_dist.models.loading import BUNDLED
from ccs_dist.toy.planted import planted_factor
from ccs_dist.toy.train import ARCH

HEAD = ["model", "layer", "head"]
ACCURACY_TARGET = 0.9
AGREEMENT_AIM = 0.8
CCS_HIGH = 4
MIN_CONCEPT_HEADS = 2
OUTCOME_SCHEMA = {"model": pl.Utf8, "outcome": pl.Int64, "check": pl.Utf8, "value": pl.Float64,
                  "reference": pl.Float64, "n": pl.Int64, "passed": pl.Boolean}


def weighted_ccs(spans: pl.DataFrame, judgments: pl.DataFrame) -> pl.DataFrame:
    """(model, layer, head, ccs_weighted): 5 x the share of the spans' variance carried by aligned spans."""
    verdicts = majority_verdicts(judgments).select(HEAD + ["rank", "aligned"])
    joined = spans.select(HEAD + ["rank", "variance"]).join(verdicts, on=HEAD + ["rank"], how="left")
    return joined.group_by(HEAD).agg(
        (5 * (pl.col("variance") * pl.col("aligned").fill_null(False).cast(pl.Float64)).sum()
         / pl.col("variance").sum()).fill_nan(0.0).alias("ccs_weighted")
    )


def toy_heads(ground_truth: pl.DataFrame, ccs: pl.DataFrame, spans: pl.DataFrame, judgments: pl.DataFrame,
              concept_map: Mapping[str, Sequence[str]], factors: Sequence[str]) -> pl.DataFrame:
    """Per head: probe_factor, variance_share, selectivity, label, label_factors, agrees, ccs, ccs_weighted."""

    wanted = set(factors)
    probe = probe_factors(ground_truth)
    scored = ccs.select(HEAD + ["label", "ccs"]).join(weighted_ccs(spans, judgments), on=HEAD, how="left")
    out = probe.join(scored, on=HEAD, how="inner").with_columns(
        pl.col("label").map_elements(
            lambda lab: ",".join(f for f in label_families(lab or "", concept_map) if f in wanted), return_dtype=pl.Utf8
        ).alias("label_factors")
    )
    return out.with_columns(
        pl.struct("probe_factor", "label_factors").map_elements(
            lambda r: r["probe_factor"] in r["label_factors"].split(","), return_dtype=pl.Boolean
        ).alias("agrees"),
        pl.struct(HEAD).map_elements(lambda r: _planted(r["model"], r["layer"], r["head"]), return_dtype=pl.Utf8)
        .alias("planted_factor"),
    ).select(HEAD + ["planted_factor", "probe_factor", "variance_share", "selectivity", "label", "label_factors", "agrees",
                     "ccs", "ccs_weighted"]).sort(HEAD)


def _planted(model: str, layer: int, head: int) -> str | None:
    """The planted factor of a head of the bundled ``ccs-toy`` weights (trained with :mod:`ccs_dist.toy.planted`)."""

    trained = {f"{b.arch}/{b.tag}" for b in BUNDLED if b.arch == ARCH}
    return planted_factor(layer, head) if model in trained else None


def _top1(evaluation: pl.DataFrame, model: str) -> dict[tuple[str, str, int | None], float]:
    rows = evaluation.filter((pl.col("model") == model) & (pl.col("metric") == "top1") & pl.col("task").str.starts_with(TASK_PREFIX))
    return {(r["task"], r["condition"], r["seed"]): r["value"] / 100.0 for r in rows.iter_rows(named=True)}


def _row(model, outcome, check, value, reference=None, n=None, passed=None) -> dict:
    finite = value is not None and np.isfinite(value)
    return {"model": model, "outcome": outcome, "check": check, "value": float(value) if finite else None,
            "reference": None if reference is None else float(reference), "n": n,
            "passed": None if passed is None or not finite else bool(passed)}


def _agreement_rows(model: str, heads: pl.DataFrame) -> list[dict]:
    rows = []
    for score, name in (("ccs_weighted", "variance-weighted CCS"), ("ccs", "CCS (count)")):
        high = heads.filter(pl.col(score) >= CCS_HIGH)
        share = float(high["agrees"].mean()) if high.height else None
        rows.append(_row(model, 2, f"label names the probe factor, heads with {name} >= {CCS_HIGH}", share,
                         AGREEMENT_AIM, high.height, None if share is None else share >= AGREEMENT_AIM))
        rho = spearman_rho(heads[score].to_numpy().astype(float), heads["selectivity"].to_numpy()) if heads.height > 2 else None
        rows.append(_row(model, 2, f"Spearman({name}, probe selectivity)", rho, None, heads.height))
    return rows


def _pruning_drops(top1: dict, tasks: Sequence[str], condition: str, seed=None) -> dict[str, float] | None:
    drops = {}
    for t in tasks:
        base, pruned = top1.get((t, "original", None)), top1.get((t, condition, seed))
        if base is None or pruned is None:
            return None
        drops[t] = base - pruned
    return drops


def outcomes_for_model(model: str, heads: pl.DataFrame, evaluation: pl.DataFrame, factors: Sequence[str]) -> list[dict]:
    top1 = _top1(evaluation, model)
    tasks = [TASK_PREFIX + f for f in factors if (TASK_PREFIX + f, "original", None) in top1]
    rows = [_row(model, 1, f"zero-shot top-1 on {t}", top1[(t, "original", None)], ACCURACY_TARGET, None,
                 top1[(t, "original", None)] >= ACCURACY_TARGET) for t in tasks]
    rows += _agreement_rows(model, heads)

    n_pruned = {(r["condition"], r["seed"]): r["n_pruned"] for r in evaluation.filter(pl.col("model") == model).iter_rows(named=True)}
    for f in factors:
        task, cond = TASK_PREFIX + f, f"concept:{f}"
        drops = _pruning_drops(top1, tasks, cond) if task in tasks else None
        if drops is None:
            continue
        n = int(n_pruned.get((cond, None), 0))
        others = float(np.mean([d for t, d in drops.items() if t != task])) if len(drops) > 1 else None
        rows.append(_row(model, 3, f"top-1 drop on {task} pruning {cond} (reference: mean drop on the other toy tasks)",
                         drops[task], others, n, None if n < MIN_CONCEPT_HEADS or others is None else drops[task] > others))

    means = {}
    for cond in ("high", "low"):
        d = _pruning_drops(top1, tasks, cond)
        if d is not None:
            means[cond] = (float(np.mean(list(d.values()))), int(n_pruned.get((cond, None), 0)))
    seeds = sorted({s for (_, c, s) in top1 if c == "random" and s is not None})
    per_seed = [d for s in seeds if (d := _pruning_drops(top1, tasks, "random", s)) is not None]
    if per_seed:
        means["random"] = (float(np.mean([np.mean(list(d.values())) for d in per_seed])), int(n_pruned.get(("random", seeds[0]), 0)))
    for cond, (drop, n) in means.items():
        label = f"mean toy top-1 drop pruning {cond}-CCS heads" if cond != "random" else f"mean toy top-1 drop pruning random heads (mean of {len(per_seed)} seeds)"
        rows.append(_row(model, 4, label, drop, None, n))
    if "high" in means and means["high"][1] > 0 and {"low", "random"} <= set(means):
        reference = max(means["low"][0], means["random"][0])
        # no head scored low-CCS: nothing was pruned for "low", so the headline cannot be assessed (not a pass)
        passed = means["high"][0] > reference if means["low"][1] > 0 else None
        rows.append(_row(model, 4, "high-CCS drop exceeds both low-CCS and random drops (reference: the larger of those)",
                         means["high"][0], reference, means["high"][1], passed))
    return rows


def toy_tables(tables: Mapping[str, pl.DataFrame], concept_map: Mapping[str, Sequence[str]] | None = None) -> dict[str, pl.DataFrame]:
    """``toy_heads`` and ``toy_outcomes`` from a run's tables (needs ground_truth, spans, judgments, ccs, evaluation)."""

    cmap = dict(concept_map) if concept_map is not None else load_concept_map()
    gt = tables["ground_truth"]
    factors = [f for f in FACTOR_NAMES if f in set(gt["factor"].unique())]
    heads = toy_heads(gt, tables["ccs"], tables["spans"], tables["judgments"], cmap, factors)
    evaluation = tables.get("evaluation", pl.DataFrame(schema={"model": pl.Utf8, "task": pl.Utf8, "condition": pl.Utf8,
                                                               "seed": pl.Int64, "n_pruned": pl.Int64, "metric": pl.Utf8, "value": pl.Float64}))
    rows = []
    for model in heads["model"].unique(maintain_order=True).to_list():
        rows += outcomes_for_model(model, heads.filter(pl.col("model") == model), evaluation, factors)
    return {"toy_heads": heads, "toy_outcomes": pl.DataFrame(rows, schema=OUTCOME_SCHEMA)}
