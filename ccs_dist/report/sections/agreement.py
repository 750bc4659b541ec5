"""The "Agreement" section: agreement between judges' verdicts, and the paper's LLM-vs-human figures."""

from __future__ import annotations

from typing import Any

from ccs_dist.report.formatting import fmt
from ccs_dist.report.html import Markup, table, tag
from ccs_dist.report.view import ReportView


def agreement(view: ReportView) -> Markup:
    data = view.data
    parts: list[Markup] = []
    ag = data.get("agreement")
    if ag is not None:
        cols = ag.columns
        if {"judge_a", "judge_b", "metric", "value"} <= set(cols):
            metrics: list[str] = []
            pairs: dict[tuple, dict[str, Any]] = {}
            extra = [c for c in cols if c not in ("judge_a", "judge_b", "metric", "value")]
            for r in ag.to_dicts():
                key = (r["judge_a"], r["judge_b"], *(r[c] for c in extra))
                if str(r["metric"]) not in metrics:
                    metrics.append(str(r["metric"]))
                pairs.setdefault(key, {})[str(r["metric"])] = r["value"]
            rows = [[*k, *[fmt(v.get(mt), 3) if isinstance(v.get(mt), float) else fmt(v.get(mt)) for mt in metrics]] for k, v in pairs.items()]
            parts.append(table(["judge A", "judge B", *extra, *metrics], rows, caption="Agreement between verdicts"))
        else:
            rows = [[fmt(v, 3) if isinstance(v, float) else fmt(v) for v in r.values()] for r in ag.to_dicts()]
            parts.append(table(cols, rows, caption="Agreement between verdicts"))
    ref = data.paper.get("llm_vs_human_agreement_v1") if data.paper else None
    if ref:
        rows = [[m, fmt(v.get("kappa"), 3), fmt(v.get("spearman"), 3), fmt(v.get("kendall"), 3)] for m, v in ref.items()]
        parts.append(table(["model", "Cohen's κ", "Spearman ρ", "Kendall τ"], rows, caption="Paper: LLM judge vs human annotators"))
    if ag is None:
        why = ["this run has no agreement table (it needs verdicts of a second judge or of human annotators on the same "
               "descriptions)"]
        if not ref:
            why.append("the paper's LLM-vs-human figures are not available" + (
                " (paper reference figures not found)" if not data.paper else " (not in the paper reference file)"))
        parts.insert(0, tag("p", tag("strong", "No agreement figures from this run: "), "; ".join(why) + ".", class_="note",
                            id="no-agreement"))
    return Markup("".join(parts))

