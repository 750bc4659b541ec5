"""Inline SVG charts (no network, no script): CCS@K bars, CCS@K across models, pruning dot plots.

Every label goes through :func:`ccs_dist.report.html.esc`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

from ccs_dist.report.formatting import fmt
from ccs_dist.report.html import Markup, esc

MODEL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7F7F7F", "#8C564B")
# condition -> (colour, marker shape)
CONDITION_STYLE = {
    "original": ("#111111", "circle"),
    "high": ("#C0392B", "circle"),
    "low": ("#2E86C1", "circle"),
    "moderate": ("#B7950B", "circle"),
    "random": ("#7F8C8D", "square"),
    "equal:high": ("#C0392B", "triangle"),
    "equal:low": ("#2E86C1", "triangle"),
    "concept": ("#8E44AD", "diamond"),
}


def model_colour(i: int) -> str:
    return MODEL_COLOURS[i % len(MODEL_COLOURS)]


def _svg(width: int, height: int, body: list[str], label: str, cls: str = "chart") -> Markup:
    return Markup(
        f'<svg class="{cls}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{esc(label)}"><title>{esc(label)}</title>{"".join(body)}</svg>'
    )


def nice_ticks(lo: float, hi: float, target: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: a step of 1, 2, 2.5 or 5 times a power of ten, about ``target`` ticks
    (Heckbert's nice numbers); the first tick is <= lo and the last >= hi."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:  # one value: centre it in a small range around it
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(target - 1, 1)
    exp = 10 ** math.floor(math.log10(raw))
    step = next(m * exp for m in (1, 2, 2.5, 5, 10) if m * exp >= raw)
    first = math.floor(lo / step + 1e-9) * step
    n = math.ceil((hi - first) / step - 1e-9)
    return [round(first + i * step, 12) for i in range(n + 1)]


def tick_text(v: float, ticks: Sequence[float], pct: bool = False) -> str:
    """A tick label with as many decimals as the step needs (``0 %, 25 %, 50 %``; ``-5, 0, 5``; ``0.25, 0.5``)."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    scale = 100.0 if pct else 1.0
    digits = 0
    while digits < 6 and abs(round(step * scale, digits) - step * scale) > 1e-9 * max(1.0, step * scale):
        digits += 1
    out = f"{v * scale:,.{digits}f}"
    if out.startswith("-") and float(out.replace(",", "")) == 0:
        out = out[1:]
    return out + (" %" if pct else "")


def _yaxis(x0: float, y0: float, h: float, w: float, ticks: Sequence[float], pct: bool = False) -> list[str]:
    out = []
    vmax = ticks[-1] or 1.0
    for v in ticks:
        y = y0 - h * v / vmax
        out.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{esc(tick_text(v, ticks, pct))}</text>')
    return out


def ccs_at_k_chart(title: str, fractions: Sequence[float | None], paper: Sequence[float] | None, colour: str) -> Markup:
    """Bars: this run's fraction of heads with CCS = k; hollow ticks: the paper's figure for the same model."""
    W, H, left, right, top, bottom = 380, 210, 52, 12, 26, 34
    pw, ph = W - left - right, H - top - bottom
    vals = [v or 0.0 for v in fractions]
    ticks = nice_ticks(0.0, max(vals + list(paper or []) + [0.05]), 5)
    vmax = ticks[-1]
    body = _yaxis(left, top + ph, ph, pw, ticks, pct=True)
    n = len(vals)
    slot = pw / max(n, 1)
    for k, v in enumerate(vals):
        x = left + k * slot + slot * 0.18
        bw = slot * 0.64
        bh = ph * v / vmax
        body.append(f'<rect x="{x:.1f}" y="{top + ph - bh:.1f}" width="{bw:.1f}" height="{bh:.1f}" fill="{colour}" class="bar">'
                    f'<title>CCS = {k}: {v * 100:.1f}% of heads</title></rect>')
        body.append(f'<text x="{x + bw / 2:.1f}" y="{top + ph + 15:.1f}" class="tick" text-anchor="middle">{k}</text>')
        if paper is not None and k < len(paper):
            py = top + ph - ph * paper[k] / vmax
            body.append(f'<line x1="{x - 2:.1f}" x2="{x + bw + 2:.1f}" y1="{py:.1f}" y2="{py:.1f}" class="paper-mark">'
                        f'<title>paper, CCS = {k}: {paper[k] * 100:.1f}%</title></line>')
    body.append(f'<text x="{left + pw / 2:.1f}" y="{H - 4}" class="axis" text-anchor="middle">CCS (aligned descriptions of 5)</text>')
    if paper is not None:
        body.append(f'<line x1="{left + 4}" x2="{left + 22}" y1="12" y2="12" class="paper-mark"/>'
                    f'<text x="{left + 26}" y="16" class="tick">paper (same weights)</text>')
    return _svg(W, H, body, f"CCS@K of {title}")


def ccs_at_k_across(models: Sequence[tuple[str, Sequence[float | None]]]) -> Markup:
    """Grouped bars: for each k, one bar per model (legend below)."""
    n_models = max(len(models), 1)
    W = 760
    legend_rows = math.ceil(n_models / 3)
    left, right, top, bottom = 56, 12, 16, 40 + 18 * legend_rows
    H = 250 + 18 * legend_rows
    pw, ph = W - left - right, H - top - bottom
    allv = [v or 0.0 for _, f in models for v in f]
    ticks = nice_ticks(0.0, max(allv + [0.05]), 5)
    vmax = ticks[-1]
    body = _yaxis(left, top + ph, ph, pw, ticks, pct=True)
    n_k = max((len(f) for _, f in models), default=6)
    slot = pw / max(n_k, 1)
    bw = slot * 0.8 / n_models
    for k in range(n_k):
        for i, (key, f) in enumerate(models):
            v = (f[k] if k < len(f) else None) or 0.0
            x = left + k * slot + slot * 0.1 + i * bw
            bh = ph * v / vmax
            body.append(f'<rect x="{x:.1f}" y="{top + ph - bh:.1f}" width="{max(bw - 1, 1):.1f}" height="{bh:.1f}" '
                        f'fill="{model_colour(i)}" class="bar"><title>{esc(key)}, CCS = {k}: {v * 100:.1f}%</title></rect>')
        body.append(f'<text x="{left + k * slot + slot / 2:.1f}" y="{top + ph + 15:.1f}" class="tick" text-anchor="middle">{k}</text>')
    body.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph + 31:.1f}" class="axis" text-anchor="middle">CCS</text>')
    for i, (key, _) in enumerate(models):
        lx = left + (i % 3) * (pw / 3)
        ly = top + ph + 46 + 18 * (i // 3)
        body.append(f'<rect x="{lx:.1f}" y="{ly - 10}" width="12" height="12" fill="{model_colour(i)}"/>'
                    f'<text x="{lx + 17:.1f}" y="{ly}" class="tick">{esc(key)}</text>')
    return _svg(W, H, body, "CCS@K across models")


DOT_ORDER = ("original", "high", "low", "moderate", "random", "equal:high", "equal:low", "concept")


def _dodge(conds: Sequence[str], row_h: float) -> dict[str, float]:
    """Vertical offset of each condition's marker inside its row, so equal values sit side by side, not on top."""
    n = len(conds)
    span = row_h * 0.62
    return {c: (0.0 if n == 1 else -span / 2 + span * i / (n - 1)) for i, c in enumerate(conds)}


CONCEPT_COLOURS = ("#8E44AD", "#C2185B", "#6D4C41", "#00897B", "#F57C00", "#5C6BC0", "#827717", "#AD1457")


def _style(cond: str, concepts: Sequence[str] = ()) -> tuple[str, str]:
    """Colour and shape of a condition; each concept set gets its own colour (diamonds all)."""
    if cond.startswith("concept:") and cond in concepts:
        return CONCEPT_COLOURS[list(concepts).index(cond) % len(CONCEPT_COLOURS)], "diamond"
    return CONDITION_STYLE.get("concept" if cond.startswith("concept:") else cond, ("#555", "circle"))


def pruning_dotplot(task: str, metric: str, rows: Sequence[tuple[str, dict[str, tuple[float, float | None]]]],
                    higher_is_better: bool = True, row_notes: dict[str, str] | None = None) -> Markup:
    """One band per model; within it one lane per condition (dodged, so no marker hides another), distinct
    shapes, half-transparent fills; random has a ±std whisker; ticks at round numbers."""
    W = 760
    left, right, top = 230, 20, 12
    present = sorted({c for _, conds in rows for c in conds},
                     key=lambda c: (DOT_ORDER.index("concept") if c.startswith("concept:") else
                                    DOT_ORDER.index(c) if c in DOT_ORDER else len(DOT_ORDER), c))
    row_h = max(26, 9 * len(present))
    legend_h = 26 * (1 + len(present) // 7)
    H = top + row_h * max(len(rows), 1) + 30 + legend_h
    pw = W - left - right
    spreads = [(v - (s or 0), v + (s or 0)) for _, conds in rows for (v, s) in conds.values() if v is not None and math.isfinite(v)]
    if not spreads:
        return Markup("")
    ticks = nice_ticks(min(a for a, _ in spreads), max(b for _, b in spreads), 6)
    lo, hi = ticks[0], ticks[-1]

    def X(v: float) -> float:
        return left + pw * (v - lo) / (hi - lo)

    offset = _dodge(present, row_h)
    concepts = [c for c in present if c.startswith("concept:")]
    body = []
    y_axis = top + row_h * len(rows)
    for v in ticks:
        x = X(v)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{y_axis}" class="grid"/>'
                    f'<text x="{x:.1f}" y="{y_axis + 14}" class="tick" text-anchor="middle">{esc(tick_text(v, ticks))}</text>')
    arrow = "higher is better →" if higher_is_better else "← lower is better"
    body.append(f'<text x="{left + pw / 2:.1f}" y="{y_axis + 28}" class="axis" text-anchor="middle">{esc(metric)} ({arrow})</text>')
    for r, (model, conds) in enumerate(rows):
        y = top + r * row_h + row_h / 2
        note = (row_notes or {}).get(model)
        body.append(f'<text x="{left - 8}" y="{y + (0 if note else 4):.1f}" class="tick" text-anchor="end">{esc(model)}</text>')
        if note:
            body.append(f'<text x="{left - 8}" y="{y + 12:.1f}" class="tick rownote" text-anchor="end">{esc(note)}</text>')
        if r:
            body.append(f'<line x1="{left}" x2="{left + pw}" y1="{y - row_h / 2:.1f}" y2="{y - row_h / 2:.1f}" class="rowline"/>')
        for cond, (v, s) in conds.items():
            if v is None or not math.isfinite(v):
                continue
            colour, shape = _style(cond, concepts)
            yy = y + offset.get(cond, 0.0)
            tip = f"{model} · {cond}: {fmt(v)}" + (f" ± {fmt(s)}" if s is not None else "")
            if s:
                body.append(f'<line x1="{X(v - s):.1f}" x2="{X(v + s):.1f}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="{colour}" stroke-width="2" opacity="0.55"/>')
            body.append(_marker(shape, X(v), yy, colour, tip, r=4))
    ly = y_axis + 50
    lx = 4.0
    for cond in present:
        colour, shape = _style(cond, concepts)
        name = "random (mean ± std)" if cond == "random" else cond
        width = 24 + 6.2 * len(name)
        if lx + width > W:
            lx, ly = 4.0, ly + 20
        body.append(_marker(shape, lx + 6, ly - 4, colour, name, r=4))
        body.append(f'<text x="{lx + 14:.1f}" y="{ly}" class="tick">{esc(name)}</text>')
        lx += width
    return _svg(W, max(H, ly + 8), body, f"{task}: {metric} by condition and model")


CATEGORY_STYLE = {"high": ("#1d3e8f", "circle"), "moderate": ("#4fb3c6", "square"), "low": ("#d4a017", "triangle"),
                  "other": ("#8c8c8c", "circle")}


def ccs_effect_scatter(title: str, points: Sequence[dict], effect_label: str, sets_known: bool = True) -> Markup:
    """One point per scored head: CCS (x, jittered by a hash of the head, so the same run draws the same picture)
    against its single-head effect (y). Colour/shape: CCS category; a ring: the head is in a concept set;
    a cross-hair: in a random set. ``points``: dicts with hk, ccs, effect, cat, sets (list of set names), label."""
    W, H, left, right, top, bottom = 560, 300, 64, 150, 14, 40
    pw, ph = W - left - right, H - top - bottom
    vals = [p["effect"] for p in points]
    ticks = nice_ticks(min(vals + [0.0]), max(vals + [0.0]), 6)
    lo, hi = ticks[0], ticks[-1]

    def Y(v: float) -> float:
        return top + ph - ph * (v - lo) / (hi - lo)

    def X(c: float) -> float:
        return left + pw * (c + 0.5) / 6

    body = []
    for v in ticks:
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" class="grid{" zero" if v == 0 else ""}"/>'
                    f'<text x="{left - 6}" y="{Y(v) + 4:.1f}" class="tick" text-anchor="end">{esc(tick_text(v, ticks))}</text>')
    for c in range(6):
        body.append(f'<text x="{X(c):.1f}" y="{top + ph + 15}" class="tick" text-anchor="middle">{c}</text>')
    body.append(f'<text x="{left + pw / 2:.1f}" y="{H - 6}" class="axis" text-anchor="middle">CCS (jittered)</text>')
    body.append(f'<text transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" class="axis" text-anchor="middle">{esc(effect_label)}</text>')
    for p in points:
        jitter = (int(hashlib.sha256(p["hk"].encode()).hexdigest()[:6], 16) / 0xFFFFFF - 0.5) * 0.6
        x, y = X(p["ccs"] + jitter), Y(p["effect"])
        colour, shape = CATEGORY_STYLE.get(p.get("cat") or "other", CATEGORY_STYLE["other"])
        sets = p.get("sets") or []
        tip = f"{p['hk']} · CCS {p['ccs']} · effect {p['effect']:+.4g}" + (f" · {p['label']}" if p.get("label") else "") \
            + (f" · in {', '.join(sets)}" if sets else "")
        if any(s.startswith("concept:") for s in sets):
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="#8E44AD" stroke-width="1.5"/>')
        if any(s.startswith("random") for s in sets):
            body.append(f'<rect x="{x - 7:.1f}" y="{y - 7:.1f}" width="14" height="14" fill="none" stroke="#666" '
                        'stroke-width="1" stroke-dasharray="2 2"/>')
        body.append(_marker(shape, x, y, colour, tip, r=4, cls="mk pt", data=f' data-h="{esc(p["hk"])}" data-m="{int(p["m"])}"'))
    lx, ly = left + pw + 16, top + 10
    for cat, (colour, shape) in CATEGORY_STYLE.items():
        body.append(_marker(shape, lx + 5, ly - 4, colour, cat, r=4) + f'<text x="{lx + 14}" y="{ly}" class="tick">{esc(cat)}</text>')
        ly += 18
    if sets_known:
        body.append(f'<circle cx="{lx + 5}" cy="{ly - 4}" r="7" fill="none" stroke="#8E44AD" stroke-width="1.5"/>'
                    f'<text x="{lx + 16}" y="{ly}" class="tick">in a concept set</text>')
        ly += 18
        body.append(f'<rect x="{lx - 2}" y="{ly - 11}" width="14" height="14" fill="none" stroke="#666" stroke-width="1" '
                    f'stroke-dasharray="2 2"/><text x="{lx + 16}" y="{ly}" class="tick">in a random set</text>')
    return _svg(W, H, body, f"{title}: CCS against single-head effect ({len(points)} heads)", cls="chart scatter")


def _marker(shape: str, x: float, y: float, colour: str, tip: str, r: float = 5, cls: str = "mk", data: str = "") -> str:
    """A half-transparent marker with a white edge (overlaps stay visible) and its tooltip."""
    t = f"<title>{esc(tip)}</title>"
    paint = f'fill="{colour}" fill-opacity="0.75" stroke="#fff" stroke-width="0.8" class="{cls}"{data}'
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r:.1f}" height="{2 * r:.1f}" {paint}>{t}</rect>'
    if shape == "triangle":
        return (f'<polygon points="{x:.1f},{y - r - 1:.1f} {x + r + 1:.1f},{y + r:.1f} {x - r - 1:.1f},{y + r:.1f}" fill="{colour}" '
                f'fill-opacity="0.25" stroke="{colour}" stroke-width="1.8" class="{cls}"{data}>{t}</polygon>')
    if shape == "diamond":
        return f'<polygon points="{x:.1f},{y - r - 1:.1f} {x + r + 1:.1f},{y:.1f} {x:.1f},{y + r + 1:.1f} {x - r - 1:.1f},{y:.1f}" {paint}>{t}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" {paint}>{t}</circle>'
