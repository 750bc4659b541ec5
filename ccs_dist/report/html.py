"""Tiny HTML builder: every string is escaped unless wrapped in :class:`Markup` by this package.

Text from models, LLMs, files or users only ever reaches the page through :func:`esc` (element text and
attribute values) or :func:`json_for_script` (the data block read by the page's script, which inserts
it with ``textContent``), so markup in a label or description shows as text and runs nothing.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any, Iterable


VOID = frozenset({"input", "br", "hr", "img", "meta", "link", "col", "wbr"})


class Markup(str):
    """A string of trusted markup built by this package (never from data)."""


def esc(value: Any) -> Markup:
    """Escape any value for element text or a quoted attribute value."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts: Iterable[Any]) -> Markup:
    return Markup("".join(esc(p) for p in parts))


def tag(name: str, *children: Any, **attrs: Any) -> Markup:
    """``tag("td", "x", class_="num")``: attribute names lose a trailing ``_`` and map ``_`` to ``-``."""
    a = "".join(_attr(k, v) for k, v in attrs.items() if v is not None and v is not False)
    if name in VOID:
        return Markup(f"<{name}{a}>")
    return Markup(f"<{name}{a}>{join(children)}</{name}>")


def _attr(key: str, value: Any) -> str:
    key = key.rstrip("_").replace("_", "-")
    if value is True:
        return f" {key}"
    return f' {key}="{esc(value)}"'


def table(headers: Iterable[Any], rows: Iterable[Iterable[Any]], cls: str = "data", caption: Any = None) -> Markup:
    head = tag("tr", *(h if isinstance(h, Markup) and h.startswith("<th") else tag("th", h) for h in headers))
    body = []
    for row in rows:
        cells = []
        for c in row:
            if isinstance(c, Markup) and c.startswith(("<td", "<th")):
                cells.append(c)
            else:
                cells.append(tag("td", c, class_="num" if isinstance(c, (int, float)) and not isinstance(c, bool) else None))
        body.append(tag("tr", *cells))
    cap = tag("caption", caption) if caption is not None else ""
    return tag("div", tag("table", cap, tag("thead", head), tag("tbody", *body), class_=cls), class_="tscroll")


def clean_json(value: Any) -> Any:
    """NaN / inf -> None (JSON has no NaN), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def json_for_script(value: Any) -> Markup:
    """JSON safe inside ``<script type="application/json">``: no ``<``, ``>``, ``&`` or line separators."""
    text = json.dumps(clean_json(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, rep)
    return Markup(text)


def fact(value: Any, label: str) -> Markup:
    """One figure of a row of facts (``<div class="facts">``): the value in bold over its label."""
    return tag("div", tag("b", value), tag("span", label), class_="fact")
