"""The report's "Ground truth" section: the method against a toy world whose factors are known.

Reads the ``toy_outcomes`` and ``toy_heads`` tables (written by the pipeline when the probe set is
``toy:N``, see :mod:`ccs_dist.toy.outcomes`); every model side by side, the trained one next to its
random init.
"""

from __future__ import annotations

from typing import Any

from ccs_dist.core.heads import head_name
from ccs_dist.report.formatting import fmt
from ccs_dist.report.html import Markup, table, tag
from ccs_dist.report.load import RunData
from ccs_dist.report.view import ReportView

OUTCOME_TITLES = {
    1: "1. The model learned (zero-shot top-1, target ≥ 0.9)",
    2: "2. CCS agrees with ground truth (share of CCS ≥ 4 heads whose label names their probe factor, aim ≥ 0.8)",
    3: "3. Concept pruning is specific (drop on toy-f vs the mean drop on the other toy tasks; judged where ≥ 2 heads)",
    4: "4. High-CCS heads matter most (mean toy top-1 drop)",
}


def _verdict(passed: Any) -> str:
    return {True: "✓ yes", False: "✗ no"}.get(passed, "–")


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "–"
    text = fmt(row["value"], 3) if row["value"] is not None else "n/a"
    if row.get("reference") is not None:
        text += f" (vs {fmt(row['reference'], 3)})"
    if row.get("n") is not None:
        text += f", n={row['n']}"
    return f"{text} {_verdict(row.get('passed'))}"


def _outcomes(data: RunData, models: list[str]) -> Markup:
    rows = data.get("toy_outcomes").to_dicts()
    by = {(r["model"], r["check"]): r for r in rows}
    parts = []
    for outcome, title in OUTCOME_TITLES.items():
        checks = list(dict.fromkeys(r["check"] for r in rows if r["outcome"] == outcome))
        if not checks:
            continue
        body = [[c, *(_cell(by.get((m, c))) for m in models)] for c in checks]
        parts.append(table(["check", *models], body, caption=title))
    return Markup("".join(parts))


def _heads(data: RunData, models: list[str]) -> Markup:
    heads = data.get("toy_heads")
    if heads is None:
        return Markup("")
    per = {(r["model"], r["layer"], r["head"]): r for r in heads.to_dicts()}
    names = sorted({(r["layer"], r["head"]) for r in heads.to_dicts()})
    header = ["head"]
    for m in models:
        header += [f"{m}: planted factor", "probe factor (η², selectivity)", "label", "CCS", "weighted CCS", "agrees"]
    body = []
    for layer, head in names:
        row: list[Any] = [head_name(layer, head)]
        for m in models:
            r = per.get((m, layer, head))
            if r is None:
                row += ["–"] * 6
                continue
            row += [r.get("planted_factor") or "–", f"{r['probe_factor']} ({fmt(r['variance_share'], 2)}, {fmt(r['selectivity'], 2)})", r["label"] or "–",
                    r["ccs"], fmt(r["ccs_weighted"], 2), _verdict(r["agrees"])]
        body.append(row)
    return table(header, body, caption="Per head: the factor the ground truth says it encodes, its label and its CCS")


def ground_truth_section(view: ReportView) -> Markup:
    data = view.data
    outcomes = data.get("toy_outcomes")
    models = list(dict.fromkeys(outcomes["model"].to_list()))
    intro = tag(
        "p",
        "The probe images come from a toy world whose factors (colour, shape, position, size, background texture) "
        "are known for every image. A head's probe factor is the factor that explains the largest share of the "
        "variance of its direct contribution (η², between-class over total variance); selectivity is that share "
        "over the sum of all factors' shares. The weighted CCS counts each aligned span by the variance it explains "
        "(× 5), so a head spanned by two descriptions of a binary factor is not undercounted. A label names a factor "
        "through the concept map used for concept pruning. The planted factor is the one training aimed the head at "
        "(the bundled ccs-toy weights only; – for a head left free): the probe factor is measured, never read from it. "
        "These are the four outcomes of the run, whatever their values; random-init models are the contrast.",
    )
    return Markup(intro + _outcomes(data, models) + _heads(data, models))
