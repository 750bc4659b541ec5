"""RunData -> one self-contained HTML page (styles, script, data and SVG charts inline; no network).

The page carries a Content-Security-Policy that allows only its own inline script (by hash) and no
network at all; on top of that every data string is escaped (see :mod:`ccs_dist.report.html`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from ccs_dist.ccs.scores import PAPER_THRESHOLDS
from ccs_dist.core.heads import head_name
from ccs_dist.core.weights import is_random_init_key, is_random_init_tag
from ccs_dist.report import charts
from ccs_dist.report.effects import ccs_effect_section
from ccs_dist.report.html import Markup, esc, fmt, json_for_script, table, tag
from ccs_dist.report.load import RunData

MAX_ROWS = 200  # rows of a failure list shown inline; the rest are in the CSV
DESC_SHOWN = 300  # characters of a description shown in a head card; the rest on demand
DESC_EMBEDDED = 20_000  # most characters of one description the page holds; the whole text is in the CSV
COND_ORDER = ("original", "high", "low", "moderate", "random", "equal:high", "equal:low")


def _asset(name: str) -> str:
    return resources.files("ccs_dist.report").joinpath("assets", name).read_text(encoding="utf-8")


@dataclass
class ModelView:
    key: str
    index: int
    random_init: bool
    arch: str | None = None
    pretrained: str | None = None
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)  # head key -> card data
    layers: list[int] = field(default_factory=list)
    n_heads: int = 0
    judges: list[str] = field(default_factory=list)
    at_k: list[float | None] = field(default_factory=list)
    at_k_n: int | None = None
    paper_at_k: list[float] | None = None
    has_images: bool = False


# -- collecting ---------------------------------------------------------------------------------------


def _rows(df: pl.DataFrame | None, model: str | None = None) -> list[dict[str, Any]]:
    if df is None:
        return []
    if model is not None and "model" in df.columns:
        df = df.filter(pl.col("model") == model)
    return df.to_dicts()


def _model_order(data: RunData) -> list[str]:
    keys: list[str] = []
    for m in data.manifest.get("models") or []:
        if isinstance(m, dict) and m.get("model") is not None and str(m["model"]) not in keys:
            keys.append(str(m["model"]))
    for name in ("ccs", "ccs_at_k", "labels", "spans", "judgments", "evaluation", "attribution"):
        df = data.get(name)
        if df is not None and "model" in df.columns:
            for k in df["model"].unique(maintain_order=True).to_list():
                if k is not None and str(k) not in keys:
                    keys.append(str(k))
    return keys


def _is_random_init(key: str, info: dict[str, Any] | None) -> bool:
    if info is not None:
        if info.get("random_init") is not None:
            return bool(info["random_init"])
        if "pretrained" in info and is_random_init_tag(info["pretrained"]):
            return True
    return is_random_init_key(key)


def build_models(data: RunData, thumbs: ThumbIndex | None = None) -> list[ModelView]:
    infos = {str(m.get("model")): m for m in data.manifest.get("models") or [] if isinstance(m, dict)}
    paper_by_model = ((data.paper.get("ccs_at_k") or {}).get("by_model") or {}) if data.paper else {}
    thumbs = thumbnail_index(data) if thumbs is None else thumbs
    views = []
    for i, key in enumerate(_model_order(data)):
        info = infos.get(key)
        mv = ModelView(key, i, _is_random_init(key, info))
        if info:
            mv.arch, mv.pretrained = info.get("arch"), info.get("pretrained")
        if not mv.random_init and key in paper_by_model:
            mv.paper_at_k = [float(x) for x in paper_by_model[key]]
        _fill_heads(data, mv)
        _fill_images(data, mv, thumbs)
        _fill_at_k(data, mv)
        views.append(mv)
    return views


def _shorten(d: dict[str, Any]) -> None:
    """A long description shows its first DESC_SHOWN characters; ``f`` holds up to DESC_EMBEDDED of it for
    the card's "show all" and ``n`` its length (a megabyte of text would freeze the card's layout)."""
    t = d.get("t")
    if isinstance(t, str) and len(t) > DESC_SHOWN:
        d["f"], d["n"], d["t"] = t[:DESC_EMBEDDED], len(t), t[:DESC_SHOWN] + " …"


def _fill_heads(data: RunData, mv: ModelView) -> None:
    heads: dict[str, dict[str, Any]] = {}
    coords: dict[str, tuple[int, int]] = {}

    def get(layer: Any, head: Any) -> dict[str, Any]:
        k = head_name(layer, head)
        if k not in heads:
            heads[k] = {"label": None, "ccs": None, "cat": None, "nf": 0, "n": 5, "backend": None, "d": [], "scored": False}
            coords[k] = (int(layer), int(head))
        return heads[k]

    for r in _rows(data.get("ccs"), mv.key):
        h = get(r["layer"], r["head"])
        h["scored"] = True
        h["ccs"] = None if r.get("ccs") is None else int(r["ccs"])
        h["label"] = r.get("label")
        h["nf"] = int(r.get("n_failed") or 0)
        if r.get("n_descriptions"):
            h["n"] = int(r["n_descriptions"])
        h["flagged"] = bool(r.get("flagged")) if r.get("flagged") is not None else h["nf"] > 0
        cat = r.get("category")
        if cat is None and h["ccs"] is not None:
            cat = PAPER_THRESHOLDS.category(h["ccs"], h["flagged"])
        h["cat"] = cat
    for source in ("spans", "ccs"):  # per-head span facts: the ccs table repeats those of the spans table
        for r in _rows(data.get(source), mv.key):
            if r.get("stability") is not None or r.get("effective_rank") is not None:
                _span_facts(get(r["layer"], r["head"]), r)
    for r in _rows(data.get("labels"), mv.key):
        h = get(r["layer"], r["head"])
        if h["label"] is None:
            h["label"] = r.get("label")
        h["backend"] = r.get("backend")
    desc: dict[str, dict[int, dict[str, Any]]] = {}
    for r in _rows(data.get("spans"), mv.key):
        get(r["layer"], r["head"])
        desc.setdefault(head_name(r["layer"], r["head"]), {})[int(r["rank"])] = {"r": int(r["rank"]), "t": r["text"], "v": r["variance"]}
    judg = _rows(data.get("judgments"), mv.key)
    judges: list[str] = []
    for r in judg:
        if str(r["judge"]) not in judges:
            judges.append(str(r["judge"]))
    mv.judges = judges
    for r in judg:
        k = head_name(r["layer"], r["head"])
        get(r["layer"], r["head"])
        d = desc.setdefault(k, {}).setdefault(int(r["rank"]), {"r": int(r["rank"]), "t": r.get("text"), "v": None})
        if d.get("t") is None:
            d["t"] = r.get("text")
        d.setdefault("j", [None] * len(judges))
        a = r["aligned"]
        d["j"][judges.index(str(r["judge"]))] = [None if a is None else bool(a), r.get("error")]
        if heads[k]["label"] is None and r.get("label") is not None:
            heads[k]["label"] = r.get("label")
    for k, ranks in desc.items():
        items = [ranks[r] for r in sorted(ranks)]
        for d in items:
            _shorten(d)
            if "j" in d:
                d["j"] = [x if x is not None else None for x in d["j"]]
                valid = [x[0] for x in d["j"] if x is not None and x[0] is not None]
                if len(valid) * 2 > len(judges):
                    d["maj"] = sum(valid) * 2 > len(valid)
                elif judges:
                    d["maj"] = None
        heads[k]["d"] = items
    order = sorted(heads, key=lambda k: coords[k])
    mv.heads = {k: heads[k] for k in order}
    mv.layers = sorted({coords[k][0] for k in heads})
    mv.n_heads = max((coords[k][1] for k in heads), default=-1) + 1


def _span_facts(h: dict[str, Any], r: dict[str, Any]) -> None:
    """Stability (``stab``, ``s1``) and requested / effective TextSpan rank (``rr``, ``er``) of one head."""
    for key, col in (("stab", "stability"), ("s1", "span1_stability")):
        if r.get(col) is not None:
            h[key] = float(r[col])
    for key, col in (("rr", "requested_rank"), ("er", "effective_rank")):
        if r.get(col) is not None:
            h[key] = int(r[col])


def _stability_text(h: dict[str, Any]) -> str:
    if h.get("stab") is None:
        return ""
    return f"stability {h['stab']:.2f} (span 1 kept in {h.get('s1', 0) * 100:.0f}% of resamples)"


class ThumbIndex:
    """Image id -> position in the page's one list of thumbnails (each image embedded once, however many heads show it)."""

    def __init__(self, uris: dict[str, str]):
        self.uris = uris
        self.order: dict[str, int] = {}

    def ref(self, image_id: str) -> int:
        return self.order.setdefault(image_id, len(self.order))

    def payload(self) -> list[list[str | None]]:
        return [[image_id, self.uris.get(image_id)] for image_id in self.order]


_DATA_URI = re.compile(r"data:image/(webp|png|jpeg);base64,[A-Za-z0-9+/=]+")


def thumbnail_index(data: RunData) -> ThumbIndex:
    """The run's thumbnails; anything that is not a base64 image data URI is dropped (it could never be an image)."""
    df = data.get("head_thumbnails")
    uris: dict[str, str] = {}
    if df is not None:
        for image_id, uri in df.select("image_id", "data_uri").iter_rows():
            if isinstance(uri, str) and _DATA_URI.fullmatch(uri) and image_id is not None:
                uris.setdefault(str(image_id), uri)
    return ThumbIndex(uris)


def _fill_images(data: RunData, mv: ModelView, thumbs: ThumbIndex) -> None:
    """Per head ``img``: one entry per direction with its top (+) and bottom (-) images as [thumb ref, projection]."""
    rows = _rows(data.get("head_images"), mv.key)
    if not rows:
        return
    mv.has_images = True
    by_head: dict[str, dict[int, dict[str, list]]] = {}
    for r in sorted(rows, key=lambda r: (r["direction"], r["sign"], r["rank"])):
        k = head_name(r["layer"], r["head"])
        d = by_head.setdefault(k, {}).setdefault(int(r["direction"]), {"k": int(r["direction"]), "top": [], "bot": []})
        p = r["projection"]
        d["top" if int(r["sign"]) > 0 else "bot"].append([thumbs.ref(str(r["image_id"])), None if p is None else float(f"{p:.4g}")])
    for k, dirs in by_head.items():
        if k in mv.heads:
            mv.heads[k]["img"] = [dirs[i] for i in sorted(dirs)]


def _fill_at_k(data: RunData, mv: ModelView) -> None:
    rows = _rows(data.get("ccs_at_k"), mv.key)
    if rows:
        by_k = {int(r["k"]): r["fraction"] for r in rows}
        mv.at_k = [by_k.get(k) for k in range(max(by_k) + 1)]
        n = [r.get("n_heads") for r in rows if r.get("n_heads") is not None]
        mv.at_k_n = int(n[0]) if n else None
        return
    scored = [h for h in mv.heads.values() if h["scored"] and h["ccs"] is not None and not h.get("flagged")]
    if scored:
        mv.at_k = [sum(h["ccs"] == k for h in scored) / len(scored) for k in range(6)]
        mv.at_k_n = len(scored)


# -- page -----------------------------------------------------------------------------------------


def render(data: RunData, csvs: dict[str, Path], out_dir: Path) -> str:
    thumbs = thumbnail_index(data)
    models = build_models(data, thumbs)
    man = data.manifest
    run_name = str(man.get("run") or (man.get("spec") or {}).get("name") or data.run_dir.name)
    sections: list[tuple[str, str, Markup]] = []
    sections.append(("summary", "Summary", _summary(data, models)))
    if any(m.at_k for m in models):
        sections.append(("ccs-at-k", "CCS@K", _across(data, models)))
    for m in models:
        if m.heads or m.at_k:
            sections.append((f"model-{m.index}", m.key, _model_section(m)))
    if data.get("evaluation") is not None:
        sections.append(("pruning", "Pruning", _pruning(data, models)))
    if data.get("toy_outcomes") is not None:
        from ccs_dist.report.ground_truth import ground_truth_section

        sections.append(("ground-truth", "Ground truth", ground_truth_section(data)))
    if any(h["scored"] for m in models for h in m.heads.values()):
        sections.append(("ccs-effect", "CCS vs effect", ccs_effect_section(data, models)))
    if data.get("agreement") is not None or data.get("judgments") is not None:  # with verdicts, say why when there is nothing
        sections.append(("agreement", "Agreement", _agreement(data)))
    if data.get("attribution") is not None:
        sections.append(("attribution", "Attribution", _attribution(data, models)))
    sections.append(("failures", "Failures", _failures(data, models)))
    sections.append(("tables", "Tables", _downloads(data, csvs, out_dir)))

    payload = {"models": [{"key": m.key, "judges": m.judges, "img_note": None if m.has_images else _no_images_note(data),
                           "heads": {k: {kk: vv for kk, vv in h.items() if kk not in ("scored",)} for k, h in m.heads.items()}}
                          for m in models],
               "thumbs": thumbs.payload()}
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    csp = (f"default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; img-src data:; "
           "base-uri 'none'; form-action 'none'")
    nav = Markup("".join(tag("a", title, href=f"#{sid}") for sid, title, _ in sections if not sid.startswith("model-")))
    model_nav = Markup("".join(tag("a", m.key, href=f"#model-{m.index}") for m in models if m.heads or m.at_k))
    rand = [m.key for m in models if m.random_init]
    warn = Markup("")
    if rand:
        warn = tag("div", tag("strong", "Random-initialised weights. "),
                   f"{', '.join(rand)} {'was' if len(rand) == 1 else 'were'} not pretrained: their heads have learned nothing, "
                   "so CCS, labels and pruning effects are a pipeline check, not a finding about CLIP, and they are never "
                   "compared with the paper's figures.", class_="warn", role="alert", id="random-init-warning")
    notes = Markup("".join(tag("div", n, class_="note") for n in data.notes))
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    version = (man.get("versions") or {}).get("ccs_dist") or _own_version()
    body = Markup("".join(tag("section", tag("h2", title), content, id=sid, class_="model" if sid.startswith("model-") else None)
                          for sid, title, content in sections))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{esc(csp)}\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc('CCS report · ' + run_name)}</title>"
        f"<style>{_asset('report.css')}</style></head><body>"
        + tag("header", tag("h1", "Concept Consistency report · ", tag("span", run_name, id="run-name")),
              tag("p", f"generated {generated} by ccs_dist {version} · {len(models)} model{'s' if len(models) != 1 else ''} · "
                       "CCS = number of a head's 5 TextSpan descriptions an LLM judge finds aligned with its label (arXiv 2503.11103)",
                  class_="sub"),
              tag("nav", nav), tag("nav", model_nav), class_="top")
        + f"<main>{warn}{notes}{body}</main>"
        + tag("footer", "Self-contained page: no network is used. Click any head to see its card.")
        + "<dialog id=\"head-card\" aria-label=\"head card\"><div class=\"card-inner\">"
          "<button id=\"head-card-close\" type=\"button\">close ✕</button><div id=\"head-card-body\"></div></div></dialog>"
        + f"<script type=\"application/json\" id=\"ccs-data\">{json_for_script(payload)}</script>"
        + f"<script>{script}</script></body></html>\n"
    )


def _no_images_note(data: RunData) -> str:
    if data.get("head_images") is None:
        return ("No top/bottom images: this run's tables hold no head_images table (they are computed from the "
                "decomposition in the cache when the report is written from a full-grid run directory).")
    return "No top/bottom images for this model in the head_images table."


def _own_version() -> str:
    try:
        from importlib.metadata import version

        return version("ccs_dist")
    except Exception:  # noqa: BLE001
        return "?"


# -- sections -------------------------------------------------------------------------------------


def _fact(value: Any, label: str) -> Markup:
    return tag("div", tag("b", value), tag("span", label), class_="fact")


_PRECISION_STAGES = ("decompose", "text_embeddings", "textspan", "evaluate")


def _summary(data: RunData, models: list[ModelView]) -> Markup:
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
    facts = [_fact(len(models), "models"), _fact(n_scored, "heads scored")]
    if all_ccs:
        facts.append(_fact(f"{sum(all_ccs) / len(all_ccs):.2f}", f"mean CCS (of 5), n = {len(all_ccs)} heads"))
    if cats:
        facts.append(_fact(f"{cats.get('high', 0)} / {cats.get('moderate', 0)} / {cats.get('low', 0)}", "high / moderate / low heads"))
    if ev is not None:
        facts.append(_fact(ev["task"].n_unique(), "tasks evaluated"))
    if llm.get("cost_usd") is not None:
        facts.append(_fact(f"${_num(llm['cost_usd']):.2f}", "estimated LLM cost"))
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
            sec = made.get((mk, n), _num(s.get("seconds")))
            reused = bool(s.get("reused"))
            if reused and (mk, n) not in made:
                sec = float("nan")  # reused, and the stage manifest with its original cost is gone
            n_reused += reused
            total += sec if math.isfinite(sec) else 0.0
            cells.append(tag("td", _dur(sec), tag("span", "reused", class_="badge reused") if reused else "",
                             class_="num", data_sort=sec if math.isfinite(sec) else -1))
        cells.append(tag("td", _dur(total), class_="num", data_sort=total))
        grand += total
        rows.append(cells)
    caption = (f"compute time of each stage's artifacts, {_dur(grand)} in all (from the stage manifests: what the artifacts "
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
    if offline or (not _num(req) and not _num(hits) and not _num(miss) and not _num(llm.get("tokens_in"))):
        how = ", ".join(x for x in (f"{spec_llm['offline_embedder']} embeddings" if spec_llm.get("offline_embedder") else "",
                                    f"{spec_llm['offline_scoring']} scores" if spec_llm.get("offline_scoring") else "") if x)
        why = ("the offline judge" + (f" ({how})" if how else "")
               + " labelled and judged every head on this machine") if offline else             ("every score stage was reused from an earlier invocation" if _num(llm.get("score_stages_reused")) else "no request was made")
        return Markup(tag("h3", "LLM usage") + tag("p", tag("strong", "No LLM was used: "), why,
                                                     ", so there were no requests, tokens or cost.", class_="note", id="llm-none"))
    rate = None
    if hits is not None and (miss is not None or req is not None):
        denom = _num(hits) + _num(miss) if miss is not None else _num(req)
        rate = _num(hits) / denom if denom else None
    rows = []
    for key, name in LLM_ROWS:
        if key not in llm:
            continue
        v = llm[key]
        text = _usd(v) if key.endswith("_usd") else fmt(v) + (f" ({rate * 100:.0f} %)" if key == "cache_hits" and rate is not None else "")
        rows.append([name, tag("td", text, class_="num")])
    known = {k for k, _ in LLM_ROWS}
    rows += [[k.replace("_", " "), v if not isinstance(v, (dict, list)) else json.dumps(v)] for k, v in llm.items() if k not in known]
    return Markup(tag("h3", "LLM usage") + table(["measure", "this run"], rows, cls="data kv",
                                                 caption=f"LLM backend: {backend}" if backend else None))


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _dur(sec: float) -> str:
    if not math.isfinite(sec):
        return "–"
    if sec < 60:
        return f"{sec:.1f} s"
    if sec < 3600:
        return f"{sec / 60:.1f} min"
    return f"{sec / 3600:.2f} h"


def _usd(v: Any) -> str:
    x = _num(v)
    return "–" if not math.isfinite(x) else f"${x:,.4f}" if x < 1 else f"${x:,.2f}"


def _across(data: RunData, models: list[ModelView]) -> Markup:
    with_k = [m for m in models if m.at_k]
    n_k = max(len(m.at_k) for m in with_k)
    parts = [tag("p", "Fraction of each model's scored heads whose CCS equals k (flagged heads, with a failed verdict, left out). "
                      "Where this run used the paper's weights, the paper's figure is shown below this run's.", class_="muted")]
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


def _model_section(m: ModelView) -> Markup:
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
        cells.append(tag("span", f"L{layer}", class_="rowlab"))
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
            tip = f"{k} · CCS {c if c is not None else '–'}" + (f" · {d['label']}" if d["label"] is not None else "")
            extra = {}
            if d.get("stab") is not None:  # a bar under the CCS number: its width is the span stability
                tip += " · " + _stability_text(d)
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


# -- pruning ----------------------------------------------------------------------------------------


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


def _pruning(data: RunData, models: list[ModelView]) -> Markup:
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
    import re

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


# -- agreement, attribution, failures, downloads ---------------------------------------------------


def _agreement(data: RunData) -> Markup:
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


def _attribution(data: RunData, models: list[ModelView]) -> Markup:
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


def _failures(data: RunData, models: list[ModelView]) -> Markup:
    man = data.manifest
    fails = man.get("failures") if isinstance(man.get("failures"), dict) else {}
    parts: list[Markup] = []
    jd = data.get("judgments")
    failed = jd.filter(pl.col("aligned").is_null()) if jd is not None else None
    n_failed = failed.height if failed is not None else fails.get("failed_verdicts")
    flagged = [(m, k, h) for m in models for k, h in m.heads.items() if h.get("flagged")]
    skipped = [s for s in fails.get("skipped_files") or []] if isinstance(fails.get("skipped_files"), list) else []
    reused = [s for s in man.get("stages") or [] if isinstance(s, dict) and s.get("reused")]
    parts.append(tag("div", _fact(fmt(n_failed) if n_failed is not None else "–", "failed verdicts"),
                     _fact(len(flagged), "heads with a failed verdict"), _fact(len(skipped), "skipped files"),
                     _fact(len(reused), "stages reused from the cache"), class_="facts"))
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
                 _dur(made.get((str(s.get("model")), str(s.get("stage"))), float("nan")))] for s in reused]
        parts.append(table(["model", "stage", "compute time when made"], rows, caption="Stages reused from the cache"))
    if not (n_failed or flagged or skipped or reused):
        parts.append(tag("p", "Nothing failed, nothing skipped, nothing reused.", class_="muted"))
    return Markup("".join(parts))


def _downloads(data: RunData, csvs: dict[str, Path], out_dir: Path) -> Markup:
    rows = []
    for name, path in data.table_paths.items():
        df = data.tables.get(name)
        links: list[Markup] = [tag("a", "parquet", href=_rel(path, out_dir))]
        if name in csvs:
            links.append(Markup(" · "))
            links.append(tag("a", "csv", href=_rel(csvs[name], out_dir)))
        rows.append([name, df.height if df is not None else "–", ", ".join(df.columns) if df is not None else "", tag("td", *links)])
    return table(["table", "rows", "columns", "files"], rows)


def _rel(path: Path, start: Path) -> str:
    try:
        rel = os.path.relpath(path.resolve(), start.resolve())
    except ValueError:  # other drive on Windows
        return path.resolve().as_uri()
    return "/".join(rel.split(os.sep))


def iter_texts(models: Iterable[ModelView]) -> Iterable[str]:
    """Every data string shown (for tests)."""
    for m in models:
        for h in m.heads.values():
            if h["label"]:
                yield h["label"]
            for d in h["d"]:
                if d.get("t"):
                    yield d["t"]
