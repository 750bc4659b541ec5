"""Point charts: pruning dot plots (a metric per condition and model) and CCS against single-head effect."""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

from ccs_dist.report.charts.axes import marker, nice_ticks, svg, tick_text
from ccs_dist.report.formatting import fmt
from ccs_dist.report.html import Markup, esc

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
            body.append(marker(shape, X(v), yy, colour, tip, r=4))
    ly = y_axis + 50
    lx = 4.0
    for cond in present:
        colour, shape = _style(cond, concepts)
        name = "random (mean ± std)" if cond == "random" else cond
        width = 24 + 6.2 * len(name)
        if lx + width > W:
            lx, ly = 4.0, ly + 20
        body.append(marker(shape, lx + 6, ly - 4, colour, name, r=4))
        body.append(f'<text x="{lx + 14:.1f}" y="{ly}" class="tick">{esc(name)}</text>')
        lx += width
    return svg(W, max(H, ly + 8), body, f"{task}: {metric} by condition and model")


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
        body.append(marker(shape, x, y, colour, tip, r=4, cls="mk pt", data=f' data-h="{esc(p["hk"])}" data-m="{int(p["m"])}"'))
    lx, ly = left + pw + 16, top + 10
    for cat, (colour, shape) in CATEGORY_STYLE.items():
        body.append(marker(shape, lx + 5, ly - 4, colour, cat, r=4) + f'<text x="{lx + 14}" y="{ly}" class="tick">{esc(cat)}</text>')
        ly += 18
    if sets_known:
        body.append(f'<circle cx="{lx + 5}" cy="{ly - 4}" r="7" fill="none" stroke="#8E44AD" stroke-width="1.5"/>'
                    f'<text x="{lx + 16}" y="{ly}" class="tick">in a concept set</text>')
        ly += 18
        body.append(f'<rect x="{lx - 2}" y="{ly - 11}" width="14" height="14" fill="none" stroke="#666" stroke-width="1" '
                    f'stroke-dasharray="2 2"/><text x="{lx + 16}" y="{ly}" class="tick">in a random set</text>')
    return svg(W, H, body, f"{title}: CCS against single-head effect ({len(points)} heads)", cls="chart scatter")
