"""The "Pruning" section: each task's metric under each pruned head set, per model, beside the paper's figures."""

from __future__ import annotations

import math
import re
from typing import Any

from ccs_dist.report import charts
from ccs_dist.report.formatting import fmt
from ccs_dist.report.html import Markup, table, tag
from ccs_dist.report.view import ReportView

COND_ORDER = ("original", "high", "low", "moderate", "random", "equal:high", "equal:low")


def _task_kind(metrics: set[str]) -> str:
    if "top1" in metrics:
        return "classification"
    if any(x.startswith(("t2v_", "v2t_")) for x in metrics):
        return "retrieval"
    if any(x.startswith(("maxskew", "ndkl")) for x in metrics):
        return "bias"
    return "other"


def _primary(kind: str, metrics: set[str]) -> tuple[str, bool]:
    if kind == "classification":
        return "top1", True
    if kind == "retrieval":
        return ("t2v_R@1" if "t2v_R@1" in metrics else sorted(metrics)[0]), True
    if kind == "bias":
        cands = sorted(x for x in metrics if x.startswith("maxskew") and x.endswith("_sum")) or sorted(metrics)
        return cands[0], False
    cands = sorted(x for x in metrics if x != "n")
    return (cands[0] if cands else "n"), True


def _cond_sort(c: str) -> tuple[int, str]:
    if c in COND_ORDER:
        return (COND_ORDER.index(c), c)
    if c.startswith("concept:"):
        return (20, c)
    return (30, c)


def _paper_task(paper: dict[str, Any], task: str, model: str, kind: str, metric: str) -> dict[str, float]:
    """The paper's figures for (task, model) as condition -> value, in the metric this run reports."""
    out: dict[str, float] = {}
    if not paper:
        return out
    if kind == "classification" and metric == "top1":
        v = (paper.get("zero_shot_original_high_low") or {}).get(task, {}).get(model)
        if v:
            out.update(zip(("original", "high", "low"), v))
        r = (paper.get("high_vs_random_pruned") or {}).get(task, {}).get(model)
        if r and len(r) > 1:
            out["random"] = r[1]
        if task == "country211":
            c = (paper.get("concept_pruning_country211_original_location_animal") or {}).get(model)
            if c:
                out.update(zip(("original", "concept:location", "concept:animal"), c))
    elif kind == "retrieval" and metric == "t2v_R@1":
        v = (paper.get("video_retrieval_t2v_R1_original_high_low_random") or {}).get(task, {})
        v = v.get(model) if isinstance(v, dict) else None
        if v:
            out.update(zip(("original", "high", "low", "random"), v))
    elif kind == "bias" and metric.startswith("maxskew@10_sum"):
        v = (paper.get("bias_maxskew_at_10_summed_over_104_occupations_original_high_low") or {}).get(task, {})
        v = v.get(model) if isinstance(v, dict) else None
        if v:
            out.update(zip(("original", "high", "low"), v))
    return {k: float(x) for k, x in out.items() if x is not None}


def pruning(view: ReportView) -> Markup:
    data, models = view.data, view.models
    ev = data.get("evaluation")
    assert ev is not None
    rand_of = {m.key: m.random_init for m in models}
    order = {m.key: m.index for m in models}
    # (task) -> model -> condition -> metric -> list of (seed, value, n_pruned)
    cube: dict[str, dict[str, dict[str, dict[str, list[tuple[Any, float, Any]]]]]] = {}
    for r in ev.to_dicts():
        if r.get("value") is None:
            continue
        cube.setdefault(str(r["task"]), {}).setdefault(str(r["model"]), {}).setdefault(str(r["condition"]), {}) \
            .setdefault(str(r["metric"]), []).append((r.get("seed"), float(r["value"]), r.get("n_pruned")))
    kinds = {t: _task_kind({mt for mods in cube[t].values() for conds in mods.values() for mt in conds}) for t in cube}
    kind_rank = {"classification": 0, "retrieval": 1, "bias": 2, "other": 3}
    parts = [tag("p", "Each head set is soft-pruned (its heads' outputs zeroed) and the model re-evaluated. "
                      "Random sets: mean ± std over seeds, as many heads as the high set. Cells show the value and its change "
                      "from the unpruned model; the paper's figure is shown below when this run used the paper's weights.",
                 class_="muted")]
    toc = []
    blocks = []
    for ti, task in enumerate(sorted(cube, key=lambda t: (kind_rank[kinds[t]], t))):
        kind = kinds[task]
        per_model = cube[task]
        metrics = {mt for conds in per_model.values() for ms in conds.values() for mt in ms}
        metric, hib = _primary(kind, metrics)
        conds = sorted({c for cs in per_model.values() for c in cs if not c.startswith("random:")} |
                       ({"random"} if any(c.startswith("random") for cs in per_model.values() for c in cs) else set()),
                       key=_cond_sort)
        dot_rows = []
        trows = []
        for mk in sorted(per_model, key=lambda k: order.get(k, 1 << 20)):
            summary = {c: _cond_value(per_model[mk], c, metric) for c in conds}
            dot_rows.append((mk, {c: (v, s) for c, (v, s, _) in summary.items() if v is not None}))
            orig = summary.get("original", (None, None, None))[0]
            n_test = _sample_size(per_model[mk])
            cells: list[Any] = [tag("td", tag("span", mk, class_="mname"), tag("span", "random init", class_="badge rand") if rand_of.get(mk) else "",
                                    tag("span", f"n = {n_test:,} test items" if n_test else "", class_="nsize"))]
            paper = {} if rand_of.get(mk, False) else _paper_task(data.paper, task, mk, kind, metric)
            for c in conds:
                v, s, n = summary[c]
                if v is None:
                    cells.append(tag("td", "–", class_="num"))
                    continue
                txt = fmt(v) + (f" ± {fmt(s)}" if s is not None else "")
                n_seeds = len(per_model[mk].get("random", {}).get(metric, [])) if c == "random" else 0
                delta = Markup("")
                if orig is not None and c != "original":
                    dv = v - orig
                    good = (dv >= 0) == hib
                    delta = tag("span", f"{dv:+.2f}", class_=f"delta {'pos' if good else 'neg'}")
                pv = paper.get(c)
                ptxt = tag("span", f"paper {pv:.2f}", class_="paper") if pv is not None else ""
                size = " · ".join(x for x in (f"{n} head{'' if n == 1 else 's'}" if n is not None and c != "original" else "",
                                              f"{n_seeds} seeds" if n_seeds else "") if x)
                cells.append(tag("td", txt, delta, tag("span", size, class_="nsize") if size else "", ptxt, class_="num", data_sort=v,
                                 title=f"{c}: {n} heads pruned" if n is not None else None))
            trows.append(cells)
        anchor = f"task-{ti}"
        toc.append(tag("a", task, href=f"#{anchor}"))
        heads = ["model", *[tag("th", c, class_="num", title=_cond_help(c)) for c in conds]]
        block = [tag("h3", task, tag("span", f"{kind} · {metric}", class_="kind"), id=anchor),
                 charts.pruning_dotplot(task, metric, dot_rows, higher_is_better=hib,
                                        row_notes={mk: "random init" for mk in per_model if rand_of.get(mk)}),
                 table(heads, trows, cls="data sortable")]
        block.append(_all_metrics(task, kind, per_model, order, open_=(kind == "retrieval")))
        blocks.append(Markup("".join(block)))
    parts.append(tag("p", "Tasks: ", *[Markup(x + " ") for x in toc], class_="small"))
    parts.extend(blocks)
    return Markup("".join(parts))


def _sample_size(conds: dict[str, dict[str, list]]) -> int | None:
    """Test items behind a model's figures on one task: the evaluation's ``n`` metric of the unpruned model."""
    n = conds.get("original", {}).get("n")
    return int(n[0][1]) if n and n[0][1] is not None and math.isfinite(n[0][1]) else None


def _cond_help(c: str) -> str:
    return {
        "original": "no head pruned", "high": "heads with CCS = 5 pruned", "low": "heads with CCS ≤ 1 pruned",
        "moderate": "heads with CCS = 3 pruned", "random": "random head sets of the high set's size: mean ± std over seeds",
        "equal:high": "as many high heads as low heads", "equal:low": "as many low heads as high heads",
    }.get(c, "heads whose label belongs to this concept family" if c.startswith("concept:") else "explicit head list")


def _cond_value(conds: dict[str, dict[str, list]], cond: str, metric: str) -> tuple[float | None, float | None, Any]:
    if cond == "random":
        mean = conds.get("random:mean", {}).get(metric)
        std = conds.get("random:std", {}).get(metric)
        if mean:
            return mean[0][1], (std[0][1] if std else None), mean[0][2]
        seeds = [v for _, v, _ in conds.get("random", {}).get(metric, [])]
        if not seeds:
            return None, None, None
        mu = sum(seeds) / len(seeds)
        sd = (sum((x - mu) ** 2 for x in seeds) / (len(seeds) - 1)) ** 0.5 if len(seeds) > 1 else 0.0
        return mu, sd, conds["random"][metric][0][2]
    vals = conds.get(cond, {}).get(metric)
    if not vals:
        return None, None, None
    return vals[0][1], None, vals[0][2]


def _metric_sort(m: str) -> tuple:
    d = 0 if m.startswith("t2v") else 1 if m.startswith("v2t") else 2
    num = re.search(r"R@(\d+)", m)
    return (d, m == "n", 0 if num else 1, int(num.group(1)) if num else 0, m)


def _all_metrics(task: str, kind: str, per_model: dict, order: dict[str, int], open_: bool) -> Markup:
    metrics = sorted({mt for conds in per_model.values() for ms in conds.values() for mt in ms}, key=_metric_sort)
    rows = []
    for mk in sorted(per_model, key=lambda k: order.get(k, 1 << 20)):
        conds = per_model[mk]
        names = sorted({c for c in conds if not c.startswith("random")} | ({"random"} if any(c.startswith("random") for c in conds) else set()),
                       key=_cond_sort)
        for c in names:
            cells: list[Any] = [mk, c]
            for mt in metrics:
                v, s, n = _cond_value(conds, c, mt)
                cells.append(tag("td", "–" if v is None else fmt(v) + (f" ± {fmt(s)}" if s is not None else ""), class_="num",
                                 data_sort=v if v is not None else ""))
            n_pruned = next((x[2] for ms in conds.get(c if c != "random" else "random:mean", conds.get(c, {})).values() for x in ms), None) \
                if conds.get(c if c != "random" else "random:mean") else None
            cells.append(fmt(n_pruned))
            rows.append(cells)
    what = {"retrieval": "retrieval R@k, MedR, MeanR (text→video t2v, video→text v2t)",
            "bias": "bias: MaxSkew@k and NDKL@k (lower is fairer)"}.get(kind, "all metrics")
    return tag("details", tag("summary", f"{task}: {what}"),
               table(["model", "condition", *metrics, "heads pruned"], rows, cls="data sortable"), open=open_)

