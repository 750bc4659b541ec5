"""Inline SVG charts (no network, no script): CCS@K bars, CCS@K across models, pruning dot plots.

Every label goes through :func:`ccs_dist.report.html.esc`.
"""

from __future__ import annotations

import math
from typing import Sequence

from ccs_dist.report.html import Markup, esc, fmt

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


def _nice_max(v: float) -> float:
    if v <= 0 or not math.isfinite(v):
        return 1.0
    exp = 10 ** math.floor(math.log10(v))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= v:
            return step * exp
    return 10 * exp


def _yaxis(x0: float, y0: float, h: float, w: float, vmax: float, ticks: int = 4, pct: bool = False) -> list[str]:
    out = []
    for i in range(ticks + 1):
        v = vmax * i / ticks
        y = y0 - h * i / ticks
        out.append(f'<line x1="{x0}" x2="{x0 + w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        txt = f"{v * 100:.0f}%" if pct else fmt(v, 1 if vmax < 10 else 0)
        out.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{esc(txt)}</text>')
    return out


def ccs_at_k_chart(title: str, fractions: Sequence[float | None], paper: Sequence[float] | None, colour: str) -> Markup:
    """Bars: this run's fraction of heads with CCS = k; hollow ticks: the paper's figure for the same model."""
    W, H, left, right, top, bottom = 380, 210, 44, 12, 26, 34
    pw, ph = W - left - right, H - top - bottom
    vals = [v or 0.0 for v in fractions]
    vmax = _nice_max(max(vals + list(paper or []) + [0.05]))
    body = _yaxis(left, top + ph, ph, pw, vmax, pct=True)
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
    left, right, top, bottom = 48, 12, 16, 40 + 18 * legend_rows
    H = 250 + 18 * legend_rows
    pw, ph = W - left - right, H - top - bottom
    allv = [v or 0.0 for _, f in models for v in f]
    vmax = _nice_max(max(allv + [0.05]))
    body = _yaxis(left, top + ph, ph, pw, vmax, pct=True)
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


def pruning_dotplot(task: str, metric: str, rows: Sequence[tuple[str, dict[str, tuple[float, float | None]]]],
                    higher_is_better: bool = True) -> Markup:
    """One row per model; markers per condition on a shared x axis; random has a ±std whisker."""
    W = 760
    left, right, top = 230, 20, 12
    row_h = 26
    legend_h = 26
    H = top + row_h * max(len(rows), 1) + 30 + legend_h
    pw = W - left - right
    vals = [v for _, conds in rows for (v, s) in conds.values() if v is not None and math.isfinite(v)]
    spreads = [(v - (s or 0), v + (s or 0)) for _, conds in rows for (v, s) in conds.values() if v is not None and math.isfinite(v)]
    if not vals:
        return Markup("")
    lo = min(a for a, _ in spreads)
    hi = max(b for _, b in spreads)
    pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1.0)
    lo, hi = lo - pad, hi + pad

    def X(v: float) -> float:
        return left + pw * (v - lo) / (hi - lo)

    body = []
    y_axis = top + row_h * len(rows)
    for i in range(6):
        v = lo + (hi - lo) * i / 5
        x = X(v)
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{y_axis}" class="grid"/>'
                    f'<text x="{x:.1f}" y="{y_axis + 14}" class="tick" text-anchor="middle">{esc(fmt(v, 1))}</text>')
    arrow = "higher is better →" if higher_is_better else "← lower is better"
    body.append(f'<text x="{left + pw / 2:.1f}" y="{y_axis + 28}" class="axis" text-anchor="middle">{esc(metric)} ({arrow})</text>')
    for r, (model, conds) in enumerate(rows):
        y = top + r * row_h + row_h / 2
        body.append(f'<text x="{left - 8}" y="{y + 4:.1f}" class="tick" text-anchor="end">{esc(model)}</text>')
        body.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="rowline"/>')
        for cond, (v, s) in conds.items():
            if v is None or not math.isfinite(v):
                continue
            colour, shape = CONDITION_STYLE.get(cond.split(":")[0] if cond.startswith("concept:") else cond, ("#555", "circle"))
            x = X(v)
            tip = f"{model} · {cond}: {fmt(v)}" + (f" ± {fmt(s)}" if s is not None else "")
            if s:
                body.append(f'<line x1="{X(v - s):.1f}" x2="{X(v + s):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="3" opacity="0.45"/>')
            body.append(_marker(shape, x, y, colour, tip))
    # legend
    ly = H - 10
    lx = 4.0
    for cond in ("original", "high", "low", "moderate", "random", "equal:high", "equal:low", "concept"):
        colour, shape = CONDITION_STYLE[cond]
        name = "random (mean ± std)" if cond == "random" else ("concept:*" if cond == "concept" else cond)
        body.append(_marker(shape, lx + 6, ly - 4, colour, name))
        body.append(f'<text x="{lx + 14:.1f}" y="{ly}" class="tick">{esc(name)}</text>')
        lx += 24 + 6.2 * len(name)
    return _svg(W, H, body, f"{task}: {metric} by condition and model")


def _marker(shape: str, x: float, y: float, colour: str, tip: str) -> str:
    t = f"<title>{esc(tip)}</title>"
    if shape == "square":
        return f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{colour}" class="mk">{t}</rect>'
    if shape == "triangle":
        return f'<polygon points="{x:.1f},{y - 6:.1f} {x + 6:.1f},{y + 5:.1f} {x - 6:.1f},{y + 5:.1f}" fill="none" stroke="{colour}" stroke-width="2" class="mk">{t}</polygon>'
    if shape == "diamond":
        return f'<polygon points="{x:.1f},{y - 6:.1f} {x + 6:.1f},{y:.1f} {x:.1f},{y + 6:.1f} {x - 6:.1f},{y:.1f}" fill="{colour}" class="mk">{t}</polygon>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}" class="mk">{t}</circle>'
