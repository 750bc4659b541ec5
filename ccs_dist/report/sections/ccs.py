"""CCS sections: "CCS@K" across models, and one section per model (its CCS@K, head grid and head table)."""

from __future__ import annotations

from typing import Any

from ccs_dist.ccs.scores import PAPER_THRESHOLDS
from ccs_dist.core.heads import head_name
from ccs_dist.report import charts
from ccs_dist.report.formatting import fmt, stability_text
from ccs_dist.report.html import Markup, table, tag
from ccs_dist.report.sections.judge import judge_validation
from ccs_dist.report.view import ModelView, ReportView


def across(view: ReportView) -> Markup:
    data, models = view.data, view.models
    with_k = [m for m in models if m.at_k]
    n_k = max(len(m.at_k) for m in with_k)
    parts = [tag("p", "Fraction of each model's scored heads whose CCS equals k (flagged heads, with a failed verdict, left out). "
                      "Where this run used the paper's weights, the paper's figure is shown below this run's.", class_="muted")]
    parts.append(judge_validation(view))
    parts.append(charts.ccs_at_k_across([(m.key, m.at_k) for m in with_k]))
    counts = (data.paper.get("head_counts_high_moderate_low") or {}) if data.paper else {}
    rows = []
    for m in with_k:
        cells: list[Any] = [tag("td", tag("a", m.key, href=f"#model-{m.index}", class_="mname"),
                                tag("span", "random init", class_="badge rand") if m.random_init else "")]
        for k in range(n_k):
            v = m.at_k[k] if k < len(m.at_k) else None
            p = m.paper_at_k[k] if m.paper_at_k and k < len(m.paper_at_k) else None
            cells.append(tag("td", fmt(v, 3), tag("span", f"paper {p:.3f}", class_="paper") if p is not None else "",
                             class_="num", data_sort=v if v is not None else -1))
        hs = [h for h in m.heads.values() if h["scored"]]
        ours = f"{sum(h['cat'] == 'high' for h in hs)} / {sum(h['cat'] == 'moderate' for h in hs)} / {sum(h['cat'] == 'low' for h in hs)}"
        pc = counts.get(m.key) if not m.random_init else None
        cells.append(tag("td", ours, tag("span", "paper " + " / ".join(str(x) for x in pc), class_="paper") if pc else "", class_="num"))
        cells.append(m.at_k_n if m.at_k_n is not None else "–")
        rows.append(cells)
    parts.append(table(["model", *[f"CCS={k}" for k in range(n_k)], "high / moderate / low", "heads counted"], rows,
                       cls="data sortable"))
    if data.paper.get("heads_scored"):
        parts.append(tag("p", "Paper: ", data.paper["heads_scored"], f"; thresholds {PAPER_THRESHOLDS.describe()}.", class_="muted small"))
    return Markup("".join(parts))


def model_section(view: ReportView) -> Markup:
    m = view.model
    assert m is not None
    parts: list[Markup] = []
    if m.random_init:
        parts.append(tag("p", tag("span", "RANDOM INIT", class_="badge rand"),
                         " weights not pretrained: no paper comparison; read these numbers as a pipeline check.", class_="warn small"))
    if m.at_k:
        krows = []
        for k, v in enumerate(m.at_k):
            p = m.paper_at_k[k] if m.paper_at_k and k < len(m.paper_at_k) else None
            krows.append([k, fmt(v, 3), fmt(p, 3) if m.paper_at_k else "–"])
        parts.append(tag("div", charts.ccs_at_k_chart(m.key, m.at_k, m.paper_at_k, charts.model_colour(m.index)),
                         table(["k", "this run", "paper"], krows, caption="CCS@K"), class_="flexrow"))
    if m.heads:
        parts.append(tag("h3", "Heads (layer × head), coloured by CCS, with their labels: click a head for its card"
                         + (" and its top images" if m.has_images else "")))
        legend = [tag("span", "CCS", class_="small")]
        legend += [tag("span", str(k), class_=f"sw c{k}") for k in range(6)]
        legend += [tag("span", "", class_="sw flagged"), tag("span", "failed verdict (lower bound)")]
        legend += [Markup("&nbsp;&nbsp;"), tag("input", type="search", class_="head-search", data_m=m.index,
                                                placeholder="find heads by label or description…", aria_label="search heads"),
                   tag("span", "", id=f"search-count-{m.index}", class_="small")]
        parts.append(tag("div", *legend, class_="legend"))
        parts.append(_grid(m))
        parts.append(_head_table(m))
    return Markup("".join(parts))


def _grid(m: ModelView) -> Markup:
    cols = m.n_heads
    cells = [tag("span", "", class_="collab")] + [tag("span", f"H{h}", class_="collab") for h in range(cols)]
    present = set(m.heads)
    for layer in m.layers:
        cells.append(tag("span", "pool" if layer == m.pool_layer else f"L{layer}", class_="rowlab"))
        for h in range(cols):
            k = head_name(layer, h)
            if k not in present:
                cells.append(tag("span", "", class_="cell empty", title=f"{k}: not scored"))
                continue
            d = m.heads[k]
            c = d["ccs"]
            cls = f"cell c{c}" if c is not None and 0 <= c <= 5 else "cell cn"
            if d.get("flagged"):
                cls += " flagged"
            name = {"pool_head": f"pooling head {h}", "pool_mlp": "pooling MLP"}.get(d.get("unit"), k)  # SigLIP's pooling
            tip = f"{name} · CCS {c if c is not None else '–'}" + (f" · {d['label']}" if d["label"] is not None else "")
            extra = {}
            if d.get("stab") is not None:  # a bar under the CCS number: its width is the span stability
                tip += " · " + stability_text(d)
                extra = {"style": f"--stab: {d['stab']:.3f}", "data_stab": f"{d['stab']:.2f}"}
                cls += " stab" + (" unstable" if d["stab"] < 0.5 else "")
            short = _short_label(d["label"])
            cells.append(tag("button", tag("b", "–" if c is None else str(c)), tag("span", short, class_="lab") if short else "",
                             type="button", class_=cls, data_m=m.index, data_h=k, title=tip, aria_label=tip, **extra))
    style = f"grid-template-columns: 34px repeat({cols}, {GRID_CELL_PX}px)"
    return tag("div", tag("div", *cells, class_="ccsgrid", style=style, data_model=m.key), class_="gridwrap")


GRID_CELL_PX = 78
SHORT_LABEL = 22  # characters of a label shown in its grid cell (two short lines); the whole label in the tooltip


def _short_label(label: Any) -> str:
    if not label:
        return ""
    text = " ".join(str(label).split())
    return text if len(text) <= SHORT_LABEL else text[: SHORT_LABEL - 1].rstrip() + "…"


def _head_table(m: ModelView) -> Markup:
    rows = []
    for k, h in sorted(m.heads.items(), key=lambda kv: (-(kv[1]["ccs"] if kv[1]["ccs"] is not None else -1), kv[0])):
        top = h["d"][0]["t"] if h["d"] else ""
        rows.append([tag("td", tag("button", k, type="button", class_="headlink", data_m=m.index, data_h=k), data_sort=k),
                     tag("td", "–" if h["ccs"] is None else str(h["ccs"]), class_="num"),
                     tag("td", "–" if h.get("stab") is None else f"{h['stab']:.2f}", class_="num"),
                     h["cat"] or "–", h["label"] or "–", top])
    return tag("details", tag("summary", f"All {len(rows)} heads as a table (sortable)"),
               table(["head", "CCS", "span stability", "category", "label", "top description"], rows, cls="data sortable"))

