"""The "Attribution" section: per model, dataset and method, the heads that matter most, with their CCS and label."""

from __future__ import annotations

import polars as pl

from ccs_dist.core.heads import head_name
from ccs_dist.report.formatting import fmt
from ccs_dist.report.html import Markup, table, tag
from ccs_dist.report.view import ReportView


def attribution(view: ReportView) -> Markup:
    data, models = view.data, view.models
    at = data.get("attribution")
    assert at is not None
    by_key = {m.key: m for m in models}
    if "class" in at.columns and at["class"].null_count() < at.height:
        at = at.filter(pl.col("class").is_not_null())  # `ccs-dist attribute` adds whole-dataset rows (class null)
    agg = (at.with_columns(pl.col("value").cast(pl.Float64).abs().alias("absval"))
           .group_by(["model", "dataset", "method", "layer", "head"])
           .agg(pl.col("absval").mean().alias("mean_abs"), pl.col("value").cast(pl.Float64).mean().alias("mean"), pl.len().alias("n")))
    blocks = []
    groups = sorted({(r["model"], r["dataset"], r["method"]) for r in agg.select("model", "dataset", "method").to_dicts()},
                    key=lambda g: (by_key[g[0]].index if g[0] in by_key else 1 << 20, str(g[1]), str(g[2])))
    for mk, ds, meth in groups:
        g = agg.filter((pl.col("model") == mk) & (pl.col("dataset") == ds) & (pl.col("method") == meth)).sort("mean_abs", descending=True)
        mv = by_key.get(mk)
        rows = []
        for r in g.head(10).to_dicts():
            k = head_name(r["layer"], r["head"])
            h = mv.heads.get(k) if mv else None
            link = tag("button", k, type="button", class_="headlink", data_m=mv.index, data_h=k) if h else k
            rows.append([tag("td", link), fmt(r["mean_abs"], 3), fmt(r["mean"], 3),
                         "–" if not h or h["ccs"] is None else h["ccs"], (h or {}).get("label") or "–"])
        blocks.append(table(["head", "mean |value|", "mean value", "CCS", "label"], rows,
                            caption=f"{mk} · {ds} · {meth}: top heads (mean over {g['n'].max() if g.height else 0} classes)"))
    return Markup(tag("p", "Heads that matter most per model, dataset and attribution method, with their CCS and label.", class_="muted")
                  + tag("div", *blocks, class_="attr"))

