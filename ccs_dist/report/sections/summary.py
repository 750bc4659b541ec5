"""The "Summary" section: the run at a glance, precision and versions, time per stage, LLM usage, the job spec."""

from __future__ import annotations

import json
import math
from typing import Any

from ccs_dist.report.formatting import dur, fmt, num, usd
from ccs_dist.report.html import Markup, fact, table, tag
from ccs_dist.report.load import RunData
from ccs_dist.report.view import ReportView

_PRECISION_STAGES = ("decompose", "text_embeddings", "textspan", "evaluate")


def summary(view: ReportView) -> Markup:
    data, models = view.data, view.models
    man = data.manifest
    parts: list[Markup] = []
    n_scored = sum(1 for m in models for h in m.heads.values() if h["scored"])
    all_ccs = [h["ccs"] for m in models for h in m.heads.values() if h["scored"] and h["ccs"] is not None and not h.get("flagged")]
    cats: dict[str, int] = {}
    for m in models:
        for h in m.heads.values():
            if h["cat"]:
                cats[h["cat"]] = cats.get(h["cat"], 0) + 1
    ev = data.get("evaluation")
    llm = man.get("llm") if isinstance(man.get("llm"), dict) else {}
    facts = [fact(len(models), "models"), fact(n_scored, "heads scored")]
    if all_ccs:
        facts.append(fact(f"{sum(all_ccs) / len(all_ccs):.2f}", f"mean CCS (of 5), n = {len(all_ccs)} heads"))
    if cats:
        facts.append(fact(f"{cats.get('high', 0)} / {cats.get('moderate', 0)} / {cats.get('low', 0)}", "high / moderate / low heads"))
    if ev is not None:
        facts.append(fact(ev["task"].n_unique(), "tasks evaluated"))
    if llm.get("cost_usd") is not None:
        facts.append(fact(f"${num(llm['cost_usd']):.2f}", "estimated LLM cost"))
    parts.append(tag("div", *facts, class_="facts"))

    rows = []
    for m in models:
        hs = [h for h in m.heads.values() if h["scored"]]
        ok = [h["ccs"] for h in hs if h["ccs"] is not None and not h.get("flagged")]
        c = {k: sum(1 for h in hs if h["cat"] == k) for k in ("high", "moderate", "low", "other")}
        weights = tag("span", "RANDOM INIT", class_="badge rand") if m.random_init else tag("span", "pretrained", class_="badge ok")
        rows.append([tag("td", tag("a", m.key, href=f"#model-{m.index}")), m.arch or "–", m.pretrained or "–",
                     tag("td", weights), len(hs), fmt(sum(ok) / len(ok)) if ok else "–",
                     c["high"], c["moderate"], c["low"], c["other"], "yes" if m.paper_at_k else "no"])
    if rows:
        parts.append(table(["model", "architecture", "pretrained", "weights", "heads scored", "mean CCS", "high", "moderate",
                            "low", "other / flagged", "paper figures"], rows, cls="data sortable"))

    precision_rows = [[str(m.get("model")), *[str((m.get("stage_precision") or {}).get(k, "–")) for k in _PRECISION_STAGES]]
                      for m in man.get("models") or [] if isinstance(m, dict) and m.get("stage_precision")]
    if precision_rows:
        parts.append(tag("h3", "Precision per stage"))
        parts.append(table(["model", *_PRECISION_STAGES], precision_rows, cls="data",
                           caption="spans are computed from fp32 head terms unless the spec sets spans.precision; "
                                   "TextSpan itself runs in fp64"))

    versions = man.get("versions")
    if isinstance(versions, dict) and versions:
        parts.append(tag("h3", "Versions"))
        parts.append(table(["package", "version"], [[k, v] for k, v in versions.items()]))

    parts.append(_stage_times(data))
    if llm:
        parts.append(_llm_usage(llm, man))
    spec = man.get("spec")
    if spec is not None:
        parts.append(tag("details", tag("summary", "Job spec"), tag("pre", json.dumps(spec, indent=2, default=str))))
    return Markup("".join(parts))


def _stage_times(data: RunData) -> Markup:
    """Compute time per model and stage: what each stage's artifacts cost when they were made (their stage
    manifest), with 'reused' where this invocation took them from the cache."""
    stages = [s for s in data.manifest.get("stages") or [] if isinstance(s, dict)]
    if not stages and not data.stage_records:
        return Markup("")
    made = {(str(r["model"]), str(r["stage"])): r["seconds"] for r in data.stage_records}
    names: list[str] = []
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    for s in stages + [{"model": m, "stage": st, "seconds": sec} for (m, st), sec in made.items()]:
        name, mk = str(s.get("stage")), "(run)" if s.get("model") is None else str(s["model"])
        if name not in names:
            names.append(name)
        by_model.setdefault(mk, {}).setdefault(name, s)  # the manifest's record first: it knows 'reused'
    rows, grand, n_reused = [], 0.0, 0
    for mk, st in by_model.items():
        cells: list[Any] = [mk]
        total = 0.0
        for n in names:
            s = st.get(n)
            if s is None:
                cells.append("")
                continue
            sec = made.get((mk, n), num(s.get("seconds")))
            reused = bool(s.get("reused"))
            if reused and (mk, n) not in made:
                sec = float("nan")  # reused, and the stage manifest with its original cost is gone
            n_reused += reused
            total += sec if math.isfinite(sec) else 0.0
            cells.append(tag("td", dur(sec), tag("span", "reused", class_="badge reused") if reused else "",
                             class_="num", data_sort=sec if math.isfinite(sec) else -1))
        cells.append(tag("td", dur(total), class_="num", data_sort=total))
        grand += total
        rows.append(cells)
    caption = (f"compute time of each stage's artifacts, {dur(grand)} in all (from the stage manifests: what the artifacts "
               "cost when they were made)" + (f"; 'reused' ({n_reused}) = this invocation took them from the cache" if n_reused else ""))
    return Markup(tag("h3", "Time per stage") + table(["model", *names, "total"], rows, cls="data sortable", caption=caption))


LLM_ROWS = (("requests", "requests sent"), ("cache_hits", "answered from the LLM cache"), ("cache_misses", "not in the cache"),
            ("tokens_in", "tokens in"), ("tokens_out", "tokens out"), ("cost_usd", "estimated cost"),
            ("cost_avoided_usd", "cost avoided by the cache"),
            ("score_stages_reused", "score stages reused (their requests not repeated)"))


def _llm_usage(llm: dict[str, Any], man: dict[str, Any]) -> Markup:
    spec_llm = ((man.get("spec") or {}).get("llm") or {}) if isinstance(man.get("spec"), dict) else {}
    backend = spec_llm.get("backend") if isinstance(spec_llm, dict) else None
    req, hits, miss = llm.get("requests"), llm.get("cache_hits"), llm.get("cache_misses")
    offline = backend == "offline"
    if offline or (not num(req) and not num(hits) and not num(miss) and not num(llm.get("tokens_in"))):
        how = ", ".join(x for x in (f"{spec_llm['offline_embedder']} embeddings" if spec_llm.get("offline_embedder") else "",
                                    f"{spec_llm['offline_scoring']} scores" if spec_llm.get("offline_scoring") else "") if x)
        why = ("the offline judge" + (f" ({how})" if how else "")
               + " labelled and judged every head on this machine") if offline else             ("every score stage was reused from an earlier invocation" if num(llm.get("score_stages_reused")) else "no request was made")
        return Markup(tag("h3", "LLM usage") + tag("p", tag("strong", "No LLM was used: "), why,
                                                     ", so there were no requests, tokens or cost.", class_="note", id="llm-none"))
    rate = None
    if hits is not None and (miss is not None or req is not None):
        denom = num(hits) + num(miss) if miss is not None else num(req)
        rate = num(hits) / denom if denom else None
    rows = []
    for key, name in LLM_ROWS:
        if key not in llm:
            continue
        v = llm[key]
        text = usd(v) if key.endswith("usd") else fmt(v) + (f" ({rate * 100:.0f} %)" if key == "cache_hits" and rate is not None else "")
        rows.append([name, tag("td", text, class_="num")])
    known = {k for k, _ in LLM_ROWS}
    rows += [[k.replace("_", " "), v if not isinstance(v, (dict, list)) else json.dumps(v)] for k, v in llm.items() if k not in known]
    return Markup(tag("h3", "LLM usage") + table(["measure", "this run"], rows, cls="data kv",
                                                 caption=f"LLM backend: {backend}" if backend else None))
