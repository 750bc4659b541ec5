"""``benchmark_checks``: every check of one model against its null, and their mean and spread over seeds.

Per model (its ``benchmark_heads`` rows and ``direct_ablation`` table), each row a statistic, its null's
mean and 95th percentile, a one-sided p-value and n (the null's draws); ``passed`` is ``p_value < alpha``
(a check without a p-value, e.g. no label names a factor, is a miss: not passed):

- ``ground truth: <eta2|ablation> factor is the plan factor``: share of the planted heads whose measured
  factor is their plan factor; null: plan factors permuted across those heads;
- ``outcome 2: <score> AUROC / precision / recall``: CCS (count) and variance-weighted CCS for "expected high"
  over the expected-high and expected-low heads (precision and recall at score >= ``ccs_high``); null: the
  expectations permuted across those heads;
- ``label recovery`` (all planted heads, then per factor): share of the expected-high heads whose label names
  their plan factor; null: labels permuted across the model's heads;
- ``concept specificity: <factor>``: pruning (direct path) the heads labelled with the factor lowers its task
  more than the mean of the other toy tasks, by this margin; null: matched random sets;
- ``high vs random`` / ``high minus low``: mean toy top-1 drop of the high-CCS set, and its excess over the
  low-CCS set's; null: matched random sets (of the high set, and pairs for the difference).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import polars as pl

from ccs_dist.artifacts.schemas import BENCHMARK_CHECKS_SCHEMA as CHECKS_SCHEMA
from ccs_dist.benchmark.config import BenchmarkConfig
from ccs_dist.benchmark.direct import NONE, NULL_PREFIX
from ccs_dist.benchmark.heads import top1
from ccs_dist.benchmark.worlds import TOY
from ccs_dist.benchmark.stats import Null, auroc, permutation_null, summarise


def _row(model: str, check: str, null: Null, config: BenchmarkConfig) -> dict:
    return {"model": model, "check": check, "value": null.value, "spread": None, "null_mean": null.null_mean,
            "null_p95": null.null_p95, "p_value": null.p_value, "n": null.n,
            "passed": null.p_value is not None and null.p_value < config.alpha}


def ground_truth_rows(model: str, heads: pl.DataFrame, config: BenchmarkConfig) -> list[dict]:
    rows = []
    for truth in ("eta2", "ablation"):
        # measured heads (a head whose removal lowers no task is measured, its factor None: a mismatch)
        measured_col = "eta2_factor" if truth == "eta2" else "ablation_drop"
        planted = heads.filter(pl.col("plan_factor").is_not_null() & pl.col(measured_col).is_not_null())
        measured = np.array(planted[f"{truth}_factor"].to_list(), dtype=object)
        stat = lambda plan, m=measured: float(np.mean(plan == m)) if len(m) else None  # noqa: E731
        null = permutation_null(stat, np.array(planted["plan_factor"].to_list(), dtype=object), config.permutations, config.seed)
        rows.append(_row(model, f"ground truth: {truth} factor is the plan factor", null, config))
    return rows


def outcome2_rows(model: str, heads: pl.DataFrame, config: BenchmarkConfig) -> list[dict]:
    judged = heads.filter(pl.col("expected").is_in(["high", "low"]) & pl.col("ccs").is_not_null())
    rows = []
    for score, name in (("ccs", "CCS (count)"), ("ccs_weighted", "variance-weighted CCS")):
        s = np.nan_to_num(np.array(judged[score].to_list(), dtype=np.float64), nan=0.0)
        predicted = s >= config.ccs_high
        stats = {
            "AUROC": lambda e: auroc(s, e == "high"),
            f"precision at >= {config.ccs_high:g}": lambda e: float(np.mean(e[predicted] == "high")) if predicted.any() else None,
            f"recall at >= {config.ccs_high:g}": lambda e: float(np.mean(predicted[e == "high"])) if (e == "high").any() else None,
        }
        expected = np.array(judged["expected"].to_list(), dtype=object)
        for stat_name, stat in stats.items():
            null = permutation_null(stat, expected, config.permutations, config.seed)
            rows.append(_row(model, f"outcome 2: {name} {stat_name}", null, config))
    return rows


def _names(label_factors: str, factor: str) -> bool:
    return factor in (label_factors or "").split(",")


def label_recovery_rows(model: str, heads: pl.DataFrame, factors: Sequence[str], config: BenchmarkConfig) -> list[dict]:
    target = np.array([e == "high" and f is not None for e, f in zip(heads["expected"], heads["plan_factor"])])
    plan_f = np.array(heads["plan_factor"].to_list(), dtype=object)
    labels = np.array(heads["label_factors"].to_list(), dtype=object)

    def share(lab, mask):
        return float(np.mean([_names(l, f) for l, f in zip(lab[mask], plan_f[mask])])) if mask.any() else None

    rows = [_row(model, "label recovery: label names the plan factor (expected-high heads)",
                 permutation_null(lambda lab: share(lab, target), labels, config.permutations, config.seed), config)]
    for factor in factors:
        mask = target & (plan_f == factor)
        rows.append(_row(model, f"label recovery: {factor}",
                         permutation_null(lambda lab, m=mask: share(lab, m), labels, config.permutations, config.seed), config))
    return rows


def _drops(acc: dict, model: str, tasks: Sequence[str], cond: str, seed: int | None) -> dict[str, float] | None:
    """Top-1 drop per task of a pruned set; None without the set (an empty set is not evaluated) or tasks."""
    if not tasks:
        return None
    out = {}
    for t in tasks:
        base, pruned = acc.get((model, t, NONE, None)), acc.get((model, t, cond, seed))
        if base is None or pruned is None:
            return None
        out[t] = base - pruned
    return out


def _null_draws(acc, model, tasks, cond, stat, n) -> list[float | None]:
    return [None if (d := _drops(acc, model, tasks, NULL_PREFIX + cond, s)) is None else stat(d) for s in range(n)]


def pruning_rows(model: str, direct: pl.DataFrame, factors: Sequence[str], config: BenchmarkConfig,
                 task_prefix: str = TOY.task_prefix) -> list[dict]:
    # a set that pruned nothing (no label names the factor, no low-CCS head) is a miss, never a zero drop
    acc = top1(direct.filter((pl.col("model") == model) & ((pl.col("n_pruned") > 0) | (pl.col("condition") == NONE))))
    tasks = [task_prefix + f for f in factors if (model, task_prefix + f, NONE, None) in acc]
    rows = []
    for f in factors:
        task = task_prefix + f

        def spec(d, task=task):
            others = [v for t, v in d.items() if t != task]
            return d[task] - float(np.mean(others)) if others and task in d else None

        observed = _drops(acc, model, tasks, f"concept:{f}", None)
        null = summarise(None if observed is None else spec(observed),
                         _null_draws(acc, model, tasks, f"concept:{f}", spec, config.null_sets))
        rows.append(_row(model, f"concept specificity: {f}", null, config))
    mean = lambda d: float(np.mean(list(d.values())))  # noqa: E731
    high, low = (_drops(acc, model, tasks, c, None) for c in ("high", "low"))
    rows.append(_row(model, "high vs random: mean toy top-1 drop of the high-CCS set",
                     summarise(None if high is None else mean(high), _null_draws(acc, model, tasks, "high", mean, config.null_sets)), config))
    pairs = zip(_null_draws(acc, model, tasks, "high", mean, config.null_sets), _null_draws(acc, model, tasks, "low", mean, config.null_sets))
    diff = None if high is None or low is None else mean(high) - mean(low)
    rows.append(_row(model, "high minus low: drop of the high-CCS set less the low-CCS set's",
                     summarise(diff, [None if a is None or b is None else a - b for a, b in pairs]), config))
    return rows


def family(model: str) -> str:
    """``arch/tag`` less a trailing seed number (``planted_v3_s2`` -> ``planted_v3``): models trained alike."""
    return re.sub(r"[-_]?(s|seed)?\d+$", "", model) if re.search(r"[-_](s|seed)?\d+$", model) else model


def seed_rows(checks: pl.DataFrame, trained: Sequence[str]) -> pl.DataFrame:
    """Per family of trained models, every check's mean over the seeds where it has a value (``n``: how many;
    ``spread``: their sample std, 0 for one; p_value: the largest; passed: on every seed, so a seed where the
    check is a miss fails the family)."""
    rows = checks.filter(pl.col("model").is_in(list(trained))).with_columns(
        pl.col("model").map_elements(family, return_dtype=pl.String).alias("family"))
    out = rows.group_by("family", "check", maintain_order=True).agg(
        pl.col("value").mean().alias("value"), pl.col("value").std(ddof=1).fill_null(0.0).alias("spread"),
        pl.col("null_mean").mean(), pl.col("null_p95").mean(), pl.col("p_value").max(),
        pl.col("value").count().cast(pl.Int64).alias("n"), pl.col("passed").all().alias("passed"))
    return out.with_columns(("seeds:" + pl.col("family")).alias("model")).select(list(CHECKS_SCHEMA)).cast(CHECKS_SCHEMA)
