"""The report's view model: a run's tables folded per model and head into what the page shows.

:class:`ModelView` is one model (its heads' card data, CCS@K, paper figures); :class:`ReportView` is the
whole page's input, which every section of :mod:`ccs_dist.report.sections` builds from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import polars as pl

from ccs_dist.ccs.scores import PAPER_THRESHOLDS
from ccs_dist.core.heads import head_name
from ccs_dist.core.weights import is_random_init_key, is_random_init_tag
from ccs_dist.report.load import RunData
from ccs_dist.report.thumbs import ThumbIndex, thumbnail_index

DESC_SHOWN = 300  # characters of a description shown in a head card; the rest on demand
DESC_EMBEDDED = 20_000  # most characters of one description the page holds; the whole text is in the CSV


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
    pool_layer: int | None = None  # the row of an attention pooling's units (SigLIP; the ``unit`` column), if any
    judges: list[str] = field(default_factory=list)
    at_k: list[float | None] = field(default_factory=list)
    at_k_n: int | None = None
    paper_at_k: list[float] | None = None
    has_images: bool = False


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
    for name in ("ccs", "ccs_at_k", "labels", "spans", "judgments", "evaluation", "attribution", "head_scores",
                 "ccs_intervals", "score_agreement"):
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
            if r.get("unit") not in (None, "head"):
                get(r["layer"], r["head"])["unit"] = r["unit"]
                mv.pool_layer = int(r["layer"])
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


@dataclass
class ReportView:
    """What every section builds from: the run, its models and thumbnails, where the page and the CSVs are.

    ``model`` is set (by :meth:`focus`) only for a section shown once per model."""

    data: RunData
    models: list[ModelView]
    thumbs: ThumbIndex
    csvs: dict[str, Path]
    out_dir: Path
    model: ModelView | None = None

    def focus(self, model: ModelView) -> ReportView:
        return dataclasses.replace(self, model=model)


def build_view(data: RunData, csvs: dict[str, Path], out_dir: Path) -> ReportView:
    thumbs = thumbnail_index(data)
    return ReportView(data, build_models(data, thumbs), thumbs, csvs, out_dir)


def iter_texts(models: Iterable[ModelView]) -> Iterable[str]:
    """Every data string shown (for tests)."""
    for m in models:
        for h in m.heads.values():
            if h["label"]:
                yield h["label"]
            for d in h["d"]:
                if d.get("t"):
                    yield d["t"]
