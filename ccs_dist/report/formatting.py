"""Numbers as the report shows them: ``–`` for anything missing or not finite, thousands separated."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:,.{digits}f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def num(v: Any) -> float:
    """``v`` as a float; NaN when it is not a number."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def dur(sec: float) -> str:
    if not math.isfinite(sec):
        return "–"
    if sec < 60:
        return f"{sec:.1f} s"
    if sec < 3600:
        return f"{sec / 60:.1f} min"
    return f"{sec / 3600:.2f} h"


def usd(v: Any) -> str:
    x = num(v)
    return "–" if not math.isfinite(x) else f"${x:,.4f}" if x < 1 else f"${x:,.2f}"


def stability_text(h: dict[str, Any]) -> str:
    """A head's span stability (``stab``, ``s1`` of its card data) in words; empty without one."""
    if h.get("stab") is None:
        return ""
    return f"stability {h['stab']:.2f} (span 1 kept in {h.get('s1', 0) * 100:.0f}% of resamples)"


def interval(value: Any, lo: Any = None, hi: Any = None, digits: int = 2) -> str:
    """``0.72 [0.61, 0.80]``; the value alone when either end is missing; ``–`` when the value is."""
    v = fmt(num(value), digits)
    if v == "–":
        return v
    a, b = fmt(num(lo), digits), fmt(num(hi), digits)
    return v if "–" in (a, b) else f"{v} [{a}, {b}]"
