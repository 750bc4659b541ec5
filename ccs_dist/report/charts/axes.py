"""Chart parts: colours, the SVG frame, round tick values and their labels, the y axis, point markers."""

from __future__ import annotations

import math
from typing import Sequence

from ccs_dist.report.html import Markup, esc

MODEL_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7F7F7F", "#8C564B")


def model_colour(i: int) -> str:
    return MODEL_COLOURS[i % len(MODEL_COLOURS)]


def svg(width: int, height: int, body: list[str], label: str, cls: str = "chart") -> Markup:
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


def yaxis(x0: float, y0: float, h: float, w: float, ticks: Sequence[float], pct: bool = False) -> list[str]:
    out = []
    vmax = ticks[-1] or 1.0
    for v in ticks:
        y = y0 - h * v / vmax
        out.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{esc(tick_text(v, ticks, pct))}</text>')
    return out


def marker(shape: str, x: float, y: float, colour: str, tip: str, r: float = 5, cls: str = "mk", data: str = "") -> str:
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
