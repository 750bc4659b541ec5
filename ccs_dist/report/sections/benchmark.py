"""The report's "Benchmark" section: every check of the planted-concept benchmark beside its null.

Reads ``benchmark_checks`` and ``benchmark_heads`` (:mod:`ccs_dist.benchmark`): per model (and the mean ±
spread over the seeds of a plan family), the statistic, its null's mean and 95th percentile, the p-value and
the number of null draws; then per head the plan beside both ground truths and the method's label and scores.
"""

from __future__ import annotations

from typing import Any

from ccs_dist.core.heads import head_name
from ccs_dist.report.formatting import fmt
from ccs_dist.report.html import Markup, table, tag
from ccs_dist.report.view import ReportView

INTRO = (
    "Each head of a planted model has a plan: the factor(s) training put there and whether the method should "
    "score it high or low. Every check is a statistic against a null: permuted plans, expectations or labels "
    "across heads, or matched random head sets (same size, same layers) pruned on the direct path. p is "
    "one-sided, (1 + #null ≥ value) / (1 + n); a check passes when p < alpha. A factor no label names is a "
    "miss, not 'not assessed'. A random-init model is checked against its architecture's plan: it is the "
    "control, its checks should fail. Numbers are as they came out."
)


def _verdict(passed: Any) -> str:
    return "✓ pass" if passed else "✗ fail"


def _checks(view: ReportView) -> Markup:
    rows = view.data.get("benchmark_checks").to_dicts()
    body = []
    for r in rows:
        value = "n/a" if r["value"] is None else fmt(r["value"], 3)
        if r.get("spread") is not None:
            value += f" ± {fmt(r['spread'], 3)}"
        body.append([r["model"], r["check"], value, fmt(r["null_mean"], 3) if r["null_mean"] is not None else "–",
                     fmt(r["null_p95"], 3) if r["null_p95"] is not None else "–",
                     fmt(r["p_value"], 4) if r["p_value"] is not None else "–", r["n"], _verdict(r["passed"])])
    return table(["model", "check", "value", "null mean", "null p95", "p", "n", ""], body,
                 caption="Checks (for seeds: n is the number of seeds, p the largest, pass on every seed)")


def _heads(view: ReportView) -> Markup:
    heads = view.data.get("benchmark_heads")
    if heads is None:
        return Markup("")
    body = []
    for r in heads.sort("model", "layer", "head").to_dicts():
        eta = "–" if r["eta2_factor"] is None else f"{r['eta2_factor']} ({fmt(r['eta2'], 2)}"
        if r["eta2_factor"] is not None:
            eta += f"; init {fmt(r['eta2_baseline'], 2)})" if r["eta2_baseline"] is not None else ")"
        abl = "–" if r["ablation_drop"] is None else f"{r['ablation_factor'] or 'none'} ({fmt(r['ablation_drop'], 3)})"
        body.append([r["model"], head_name(r["layer"], r["head"]), r["kind"], r["plan_factors"] or "–", r["expected"],
                     eta, abl, r["label"] or "–", r["label_factors"] or "–",
                     "–" if r["ccs"] is None else fmt(r["ccs"], 0), "–" if r["ccs_weighted"] is None else fmt(r["ccs_weighted"], 2)])
    return table(["model", "head", "kind", "plan", "expected", "η² factor (share; random init)", "ablation factor (drop)",
                  "label", "label names", "CCS", "weighted CCS"], body,
                 caption="Per head: the plan, both ground truths, the label and the scores")


def benchmark_section(view: ReportView) -> Markup:
    return Markup(tag("p", INTRO) + _checks(view) + _heads(view))
