"""Inline SVG charts (no network, no script): CCS@K bars, CCS@K across models, pruning dot plots, CCS vs effect.

Every label goes through :func:`ccs_dist.report.html.esc`.
"""

from __future__ import annotations

from ccs_dist.report.charts.axes import model_colour, nice_ticks, tick_text
from ccs_dist.report.charts.bars import ccs_at_k_across, ccs_at_k_chart
from ccs_dist.report.charts.points import ccs_effect_scatter, pruning_dotplot

__all__ = ["ccs_at_k_across", "ccs_at_k_chart", "ccs_effect_scatter", "model_colour", "nice_ticks", "pruning_dotplot", "tick_text"]
