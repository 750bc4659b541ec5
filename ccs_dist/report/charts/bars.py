"""Bar charts: CCS@K of one model (with the paper's figure) and CCS@K across models."""

from __future__ import annotations

import math
from typing import Sequence

from ccs_dist.report.charts.axes import model_colour, nice_ticks, svg, yaxis
from ccs_dist.report.html import Markup, esc


def ccs_at_k_chart(title: str, fractions: Sequence[float | None], paper: Sequence[float] | None, colour: str) -> Markup:
    """Bars: this run's fraction of heads with CCS = k; hollow ticks: the paper's figure for the same model."""
    W, H, left, right, top, bottom = 380, 210, 52, 12, 26, 34
    pw, ph = W - left - right, H - top - bottom
    vals = [v or 0.0 for v in fractions]
    ticks = nice_ticks(0.0, max(vals + list(paper or []) + [0.05]), 5)
    vmax = ticks[-1]
    body = yaxis(left, top + ph, ph, pw, ticks, pct=True)
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
    return svg(W, H, body, f"CCS@K of {title}")


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
    body = yaxis(left, top + ph, ph, pw, ticks, pct=True)
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
    return svg(W, H, body, "CCS@K across models")
