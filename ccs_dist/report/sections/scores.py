"""The "Scores" section: the ranking view of the head card's scores.

From the ``head_scores`` table (model, layer, head, label, score, value, lo, hi, null_value, n), per model: a
head table sortable by each score (intervals as ``0.72 [0.61, 0.80]``), a scatter of CCS against detection
AUROC, and the rank correlations between the scores (``score_agreement``); across models, CCS@K with its
intervals (``ccs_intervals``). Each part is shown when its table is in the run, the section when any is.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from ccs_dist.core.heads import head_name
from ccs_dist.report import charts
from ccs_dist.report.charts.scores import score_scatter
from ccs_dist.report.formatting import fmt, interval, num
from ccs_dist.report.html import Markup, table, tag
from ccs_dist.report.view import ReportView

SCORE_TABLES = ("head_scores", "ccs_intervals", "score_agreement")
# score id -> (column title, what it measures); scores not listed keep their id, after these
SCORES = {
    "ccs": ("CCS", "aligned descriptions of 5, as judged"),
    "ccs_weighted": ("CCS (variance-weighted)", "spans weighted by the variance they explain"),
    "detection_auroc": ("detection AUROC", "the judge telling the head's top images from random ones by its label"),
    "detection_balanced_accuracy": ("detection bal. acc.", "the same judge's balanced accuracy"),
    "simulation_rho": ("simulation ρ", "Spearman ρ of the head's activation and a reference encoder's similarity to the label"),
    "monosemanticity": ("monosemanticity", "activation-weighted similarity of the top images, no label used"),
    "specificity_direct": ("specificity (direct)", "drop on the label's task less the drop elsewhere, direct path pruned"),
    "specificity_whole": ("specificity (whole head)", "the same with the whole head soft-pruned"),
}
X_SCORE, Y_SCORE = "ccs", "detection_auroc"


def has_scores(view: ReportView) -> bool:
    return any(view.data.get(t) is not None and view.data.get(t).height > 0 for t in SCORE_TABLES)


def title(score: str) -> str:
    return SCORES.get(score, (score, ""))[0]


def _score_order(df: pl.DataFrame) -> list[str]:
    present = [str(s) for s in df["score"].unique(maintain_order=True).to_list() if s is not None]
    return [s for s in SCORES if s in present] + [s for s in present if s not in SCORES]


def _model_keys(view: ReportView, df: pl.DataFrame | None) -> list[str]:
    keys = [m.key for m in view.models]
    if df is not None:
        keys += [str(k) for k in df["model"].unique(maintain_order=True).to_list() if k is not None and str(k) not in keys]
    return keys if df is None else [k for k in keys if k in set(df["model"].cast(pl.String).to_list())]


def _heads(df: pl.DataFrame, model: str) -> dict[tuple[int, int], dict[str, Any]]:
    """(layer, head) -> {"label": ..., score: row} for one model."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for r in df.filter(pl.col("model").cast(pl.String) == model).to_dicts():
        h = out.setdefault((int(r["layer"]), int(r["head"])), {"label": None})
        if h["label"] is None and r.get("label") is not None:
            h["label"] = r["label"]
        h[str(r["score"])] = r
    return dict(sorted(out.items()))


def _cell(r: dict[str, Any] | None) -> Markup:
    if r is None or fmt(num(r.get("value"))) == "–":
        return tag("td", "–", class_="num missing")
    tip = [f"n {r['n']}" if r.get("n") is not None else "", f"null {fmt(num(r.get('null_value')), 3)}" if r.get("null_value") is not None else ""]
    return tag("td", interval(r["value"], r.get("lo"), r.get("hi")), class_="num", data_sort=f"{num(r['value']):.6g}",
               title=" · ".join(t for t in tip if t) or None)


def _head_table(view: ReportView, model: str, index: int | None, heads: dict, scores: list[str]) -> Markup:
    known = view.models[index].heads if index is not None else {}
    rows = []
    for (layer, head), h in heads.items():
        hk = head_name(layer, head)
        link = tag("button", hk, type="button", class_="headlink", data_m=index, data_h=hk) if hk in known else hk
        rows.append([tag("td", link, data_sort=f"{layer:04d}.{head:04d}"), h["label"] or "–", *[_cell(h.get(s)) for s in scores]])
    headers = ["head", "label", *[tag("th", title(s), title=SCORES.get(s, (s, s))[1] or None, data_score=s) for s in scores]]
    return tag("div", table(headers, rows, cls="data sortable scoretable",
                            caption=f"{model}: {len(rows)} heads, each score with its interval [lo, hi] where the table has one "
                                    "(click a column to sort)"), id=f"score-table-{index if index is not None else model}")


def _null(df: pl.DataFrame, score: str) -> float | None:
    """The score's null value when the table gives one value for all its heads."""
    if "null_value" not in df.columns:
        return None
    vals = df.filter(pl.col("score") == score)["null_value"].drop_nulls().unique().to_list()
    return float(vals[0]) if len(vals) == 1 else None


def _scatter(df: pl.DataFrame, model: str, index: int | None, heads: dict) -> Markup:
    points = []
    for (layer, head), h in heads.items():
        x, y = h.get(X_SCORE), h.get(Y_SCORE)
        if x is None or y is None:
            continue
        points.append({"hk": head_name(layer, head), "m": index if index is not None else -1, "label": h["label"],
                       "x": num(x["value"]), "xlo": num(x.get("lo")), "xhi": num(x.get("hi")),
                       "y": num(y["value"]), "ylo": num(y.get("lo")), "yhi": num(y.get("hi"))})
    chart = score_scatter(model, points, title(X_SCORE), title(Y_SCORE), charts.model_colour(index or 0),
                          x_null=_null(df, X_SCORE), y_null=_null(df, Y_SCORE))
    if not chart:
        return tag("p", f"No head of {model} has both {title(X_SCORE)} and {title(Y_SCORE)}: no scatter.", class_="note")
    return chart


def _agreement(view: ReportView, model: str) -> Markup:
    ag = view.data.get("score_agreement")
    if ag is None:
        return tag("p", "No score_agreement table: the scores' rank correlations are not in this run.", class_="muted small")
    rows = [[title(str(r["score_a"])), title(str(r["score_b"])), tag("td", fmt(num(r["spearman"])), class_="num",
                                                                          data_sort=f"{num(r['spearman']):.6g}"),
             "–" if r.get("n") is None else int(r["n"])]
            for r in ag.filter(pl.col("model").cast(pl.String) == model).to_dicts()]
    if not rows:
        return tag("p", f"score_agreement has no rows for {model}.", class_="muted small")
    return table(["score A", "score B", "Spearman ρ", "heads"], rows, cls="data sortable agreement-table",
                 caption=f"{model}: how the scores rank the heads alike")


def _ccs_intervals(view: ReportView) -> Markup:
    ci = view.data.get("ccs_intervals")
    if ci is None or ci.height == 0:
        return Markup("")
    ks = sorted({int(k) for k in ci["k"].drop_nulls().to_list()})
    rows = []
    for model in _model_keys(view, ci):
        by_k = {int(r["k"]): r for r in ci.filter(pl.col("model").cast(pl.String) == model).to_dicts()}
        res = {int(r["resamples"]) for r in by_k.values() if r.get("resamples") is not None}
        rows.append([model, *[tag("td", interval(by_k[k]["share"], by_k[k].get("lo"), by_k[k].get("hi"), 3), class_="num",
                                  data_sort=f"{num(by_k[k]['share']):.6g}") if k in by_k else "–" for k in ks],
                     ", ".join(str(r) for r in sorted(res)) or "–"])
    return Markup(tag("h3", "CCS@K with intervals")
                  + table(["model", *[f"CCS={k}" for k in ks], "resamples"], rows, cls="data sortable ccs-intervals",
                          caption="Share of each model's heads with CCS = k, and its interval [lo, hi] over the resamples"))


def scores_section(view: ReportView) -> Markup:
    parts: list[Markup] = [tag("p", "Each head's scores side by side: where CCS and the image-grounded scores part ways. "
                                    "Hover a column title for what the score measures, a value for its n and null.",
                               class_="muted")]
    parts.append(_ccs_intervals(view))
    hs = view.data.get("head_scores")
    if hs is None or hs.height == 0:
        parts.append(tag("p", "No head_scores table: the per-head scores are not in this run.", class_="note"))
        return Markup("".join(parts))
    scores = _score_order(hs)
    index_of = {m.key: m.index for m in view.models}
    for model in _model_keys(view, hs):
        index = index_of.get(model)
        heads = _heads(hs, model)
        parts.append(tag("h3", model))
        parts.append(tag("div", _scatter(hs, model, index, heads), _agreement(view, model), class_="flexrow"))
        parts.append(_head_table(view, model, index, heads, scores))
    return Markup("".join(parts))
