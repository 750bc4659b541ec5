"""The "Failures" section: failed verdicts, flagged heads, skipped files, stages reused from the cache."""

from __future__ import annotations

import json

import polars as pl

from ccs_dist.core.heads import head_name
from ccs_dist.report.formatting import dur, fmt
from ccs_dist.report.html import Markup, fact, table, tag
from ccs_dist.report.view import ReportView

MAX_ROWS = 200  # rows of a failure list shown inline; the rest are in the CSV


def failures(view: ReportView) -> Markup:
    data, models = view.data, view.models
    man = data.manifest
    fails = man.get("failures") if isinstance(man.get("failures"), dict) else {}
    parts: list[Markup] = []
    jd = data.get("judgments")
    failed = jd.filter(pl.col("aligned").is_null()) if jd is not None else None
    n_failed = failed.height if failed is not None else fails.get("failed_verdicts")
    flagged = [(m, k, h) for m in models for k, h in m.heads.items() if h.get("flagged")]
    skipped = [s for s in fails.get("skipped_files") or []] if isinstance(fails.get("skipped_files"), list) else []
    reused = [s for s in man.get("stages") or [] if isinstance(s, dict) and s.get("reused")]
    parts.append(tag("div", fact(fmt(n_failed) if n_failed is not None else "–", "failed verdicts"),
                     fact(len(flagged), "heads with a failed verdict"), fact(len(skipped), "skipped files"),
                     fact(len(reused), "stages reused from the cache"), class_="facts"))
    if flagged:  # one line per flagged head and why: no label, a rejected request, unusable verdicts
        first_error: dict[tuple[str, str], str] = {}
        for tname in ("labels", "judgments"):
            t = data.get(tname)
            if t is not None and "error" in t.columns:
                for r in t.filter(pl.col("error").is_not_null()).select("model", "layer", "head", "error").iter_rows(named=True):
                    first_error.setdefault((r["model"], head_name(r["layer"], r["head"])), str(r["error"]))
        rows = [[m.key, tag("td", tag("button", k, type="button", class_="headlink", data_m=m.index, data_h=k)),
                 h.get("label") or "(no label)", h["nf"], first_error.get((m.key, k), "–")[:300]] for m, k, h in flagged]
        more = f" (first {MAX_ROWS} of {len(rows)})" if len(rows) > MAX_ROWS else ""
        parts.append(table(["model", "head", "label", "failed verdicts", "first error"], rows[:MAX_ROWS],
                           caption="Flagged heads: scored with failed verdicts, left out of CCS@K" + more, cls="data sortable"))
    if failed is not None and failed.height:
        rows = []
        for r in failed.head(MAX_ROWS).to_dicts():
            mv = next((m for m in models if m.key == r["model"]), None)
            k = head_name(r["layer"], r["head"])
            link = tag("button", k, type="button", class_="headlink", data_m=mv.index, data_h=k) if mv else k
            err = r.get("error")
            rows.append([r["model"], tag("td", link), int(r["rank"]) + 1, r["judge"], (str(err)[:300] if err is not None else "–")])
        more = f" (first {MAX_ROWS} of {failed.height}; all in tables/judgments.csv)" if failed.height > MAX_ROWS else ""
        ftable = table(["model", "head", "description", "judge", "error"], rows, caption="Failed verdicts" + more, cls="data sortable")
        parts.append(ftable if failed.height <= 20 else
                     tag("details", tag("summary", f"{failed.height} failed verdicts (model, head, description, judge, error)"), ftable))
    if skipped:
        items = [tag("li", tag("code", s)) for s in skipped[:MAX_ROWS]]
        if len(skipped) > MAX_ROWS:
            items.append(tag("li", f"… and {len(skipped) - MAX_ROWS} more (see manifest.json)"))
        parts.append(tag("h3", "Skipped files"))
        parts.append(tag("ul", *items))
    other = {k: v for k, v in fails.items() if k not in ("failed_verdicts", "skipped_files", "flagged_heads")}
    if other:
        parts.append(tag("details", tag("summary", "Other failure records"), tag("pre", json.dumps(other, indent=2, default=str))))
    if reused:
        made = {(str(r["model"]), str(r["stage"])): r["seconds"] for r in data.stage_records}
        rows = [[s.get("model") if s.get("model") is not None else "(run)", s.get("stage"),
                 dur(made.get((str(s.get("model")), str(s.get("stage"))), float("nan")))] for s in reused]
        parts.append(table(["model", "stage", "compute time when made"], rows, caption="Stages reused from the cache"))
    if not (n_failed or flagged or skipped or reused):
        parts.append(tag("p", "Nothing failed, nothing skipped, nothing reused.", class_="muted"))
    return Markup("".join(parts))

