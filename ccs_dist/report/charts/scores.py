"""A two-score scatter: one point per head, each score's interval drawn as a whisker, a dashed line at each score's null."""

from __future__ import annotations

import math
from typing import Sequence

from ccs_dist.report.charts.axes import marker, nice_ticks, svg, tick_text
from ccs_dist.report.html import Markup, esc


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _extent(points: Sequence[dict], axis: str, null: float | None) -> list[float]:
    vals = [p[k] for p in points for k in (axis, axis + "lo", axis + "hi") if _finite(p.get(k))]
    if null is not None:
        vals.append(null)
    return nice_ticks(min(vals), max(vals), 6)


def score_scatter(title: str, points: Sequence[dict], x_label: str, y_label: str, colour: str,
                  x_null: float | None = None, y_null: float | None = None) -> Markup:
    """``points``: dicts with hk, m (model index), x, y, optional xlo/xhi/ylo/yhi and label. Points whose x or y is
    missing are left out (the caption counts them)."""
    pts = [p for p in points if _finite(p.get("x")) and _finite(p.get("y"))]
    if not pts:
        return Markup("")
    W, H, left, right, top, bottom = 420, 300, 58, 14, 14, 42
    pw, ph = W - left - right, H - top - bottom
    xt, yt = _extent(pts, "x", x_null), _extent(pts, "y", y_null)

    def X(v: float) -> float:
        return left + pw * (v - xt[0]) / (xt[-1] - xt[0])

    def Y(v: float) -> float:
        return top + ph - ph * (v - yt[0]) / (yt[-1] - yt[0])

    body = []
    for v in yt:
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" class="grid"/>'
                    f'<text x="{left - 6}" y="{Y(v) + 4:.1f}" class="tick" text-anchor="end">{esc(tick_text(v, yt))}</text>')
    for v in xt:
        body.append(f'<text x="{X(v):.1f}" y="{top + ph + 15}" class="tick" text-anchor="middle">{esc(tick_text(v, xt))}</text>')
    if y_null is not None:
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(y_null):.1f}" y2="{Y(y_null):.1f}" class="null-line" '
                    f'stroke="#888" stroke-dasharray="4 3"><title>{esc(y_label)} at chance: {y_null:g}</title></line>')
    if x_null is not None:
        body.append(f'<line x1="{X(x_null):.1f}" x2="{X(x_null):.1f}" y1="{top}" y2="{top + ph}" class="null-line" '
                    f'stroke="#888" stroke-dasharray="4 3"><title>{esc(x_label)} at chance: {x_null:g}</title></line>')
    body.append(f'<text x="{left + pw / 2:.1f}" y="{H - 6}" class="axis" text-anchor="middle">{esc(x_label)}</text>')
    body.append(f'<text transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" class="axis" text-anchor="middle">{esc(y_label)}</text>')
    for p in pts:
        x, y = X(p["x"]), Y(p["y"])
        if _finite(p.get("xlo")) and _finite(p.get("xhi")):
            body.append(f'<line x1="{X(p["xlo"]):.1f}" x2="{X(p["xhi"]):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" opacity="0.35"/>')
        if _finite(p.get("ylo")) and _finite(p.get("yhi")):
            body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{Y(p["ylo"]):.1f}" y2="{Y(p["yhi"]):.1f}" stroke="{colour}" opacity="0.35"/>')
        tip = f"{p['hk']} · {x_label} {p['x']:.3g} · {y_label} {p['y']:.3g}" + (f" · {p['label']}" if p.get("label") else "")
        body.append(marker("circle", x, y, colour, tip, r=4, cls="mk pt", data=f' data-h="{esc(p["hk"])}" data-m="{int(p["m"])}"'))
    return svg(W, H, body, f"{title}: {y_label} against {x_label} ({len(pts)} heads)", cls="chart scatter")
