"""Head names: ``L{layer}.H{head}`` with 0-based image-encoder layers, as in the papers.

The one home of head-name formatting and parsing (pure: importable without torch).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ccs_dist.core.errors import UserError

_HEAD_RE = re.compile(r"^L(\d+)\.H(\d+)$")


def head_name(layer: int, head: int) -> str:
    return f"L{int(layer)}.H{int(head)}"


def parse_head_name(name: str) -> tuple[int, int]:
    """``"L11.H5"`` -> ``(11, 5)``; anything else is a :class:`UserError`."""
    m = _HEAD_RE.match(name.strip())
    if not m:
        raise UserError(f"bad head name {name!r}: write heads as L<layer>.H<head>, e.g. L11.H5")
    return int(m.group(1)), int(m.group(2))


def parse_heads(
    heads: str | Iterable[str | tuple[int, int]],
    num_layers: int | None = None,
    num_heads: int | None = None,
) -> list[tuple[int, int]]:
    """``"L11.H5,L10.H8"`` or a list of names / (layer, head) pairs -> sorted unique (layer, head) pairs.

    With ``num_layers`` / ``num_heads`` given, names out of range are a :class:`UserError`.
    """
    items: Iterable[str | tuple[int, int]]
    if isinstance(heads, str):
        items = [h for h in (p.strip() for p in heads.split(",")) if h]
    else:
        items = heads
    pairs: set[tuple[int, int]] = set()
    for item in items:
        if isinstance(item, str):
            layer, head = parse_head_name(item)
        else:
            layer, head = int(item[0]), int(item[1])
        if num_layers is not None and not 0 <= layer < num_layers:
            raise UserError(f"head {head_name(layer, head)}: layer out of range, this model has layers 0..{num_layers - 1}")
        if num_heads is not None and not 0 <= head < num_heads:
            raise UserError(f"head {head_name(layer, head)}: head out of range, this model has heads 0..{num_heads - 1}")
        pairs.add((layer, head))
    return sorted(pairs)


def resolve_layers(layers: int | Sequence[int], num_layers: int) -> tuple[int, ...]:
    """An int n means the last n layers; a sequence names 0-based layers (negative counts from the end)."""
    if isinstance(layers, bool):
        raise UserError(f"layers must be an int (last n layers) or a list of layer indices, got {layers!r}")
    if isinstance(layers, int):
        if not 1 <= layers <= num_layers:
            raise UserError(f"layers={layers} is out of range: this model has {num_layers} layers, give 1..{num_layers}")
        return tuple(range(num_layers - layers, num_layers))
    out = []
    for layer in layers:
        idx = int(layer) + num_layers if int(layer) < 0 else int(layer)
        if not 0 <= idx < num_layers:
            raise UserError(f"layer {layer} is out of range: this model has layers 0..{num_layers - 1}")
        out.append(idx)
    if not out:
        raise UserError("layers is empty: give an int (last n layers) or a list of layer indices")
    return tuple(sorted(set(out)))
