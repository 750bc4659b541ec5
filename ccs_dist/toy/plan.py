"""The planted plan of ``ccs-plant`` (world v3): which head of which model was trained to carry what.

Fixed in code before any ``ccs-plant`` model was trained (2026-12-03) and never tuned to a measurement. The
architecture has 4 layers x 5 heads; :data:`PLAN` gives every head a kind:

* ``mono``: one factor. Every pool-named factor (:data:`POOL_FACTORS`) has two mono heads, and each hidden
  factor (:data:`HIDDEN_FACTORS`) one: a hidden-factor head is monosemantic, but no pool line can name it, so
  the right CCS answer for it is low.
* ``mixture``: two factors with graded shares of the head's variance (70/30, 50/50).
* ``hash``: ``(a + b) mod 4`` of two factors: a function of both, yet neither alone explains it.
* ``noise``: variance kept, every factor's eta^2 driven down (it carries pixel and jitter noise).
* ``free``: no planting loss at all.

Only trained models (tags ``plant_s<seed>``) have a plan; their contrastive-only controls
(``contrastive_s<seed>``, same architecture and seeds) and random init have none (:func:`plan_of` -> None).
``expected`` says what a CCS score should say of the head: ``high`` for a mono head on a pool-named factor,
``graded`` for a 70/30 mixture, ``low`` for everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from ccs_dist.data.planted.world import HIDDEN_FACTORS, POOL_FACTORS

ARCH = "ccs-plant"
PLANTED_TAG = "plant_s"
CONTROL_TAG = "contrastive_s"
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class PlantedHead:
    layer: int
    head: int
    kind: str  # "mono" | "mixture" | "noise" | "hash" | "free"
    factors: tuple[str, ...]  # planted factors, () for noise/free
    weights: tuple[float, ...]  # share per factor, sums to 1 (() for noise/free)


def _h(layer: int, head: int, kind: str, *spec) -> PlantedHead:
    factors = tuple(f for f, _ in spec)
    weights = tuple(float(w) for _, w in spec)
    return PlantedHead(layer, head, kind, factors, weights)


PLAN: tuple[PlantedHead, ...] = (
    _h(0, 0, "mono", ("colour", 1)), _h(0, 1, "mono", ("texture", 1)), _h(0, 2, "mono", ("position", 1)),
    _h(0, 3, "mono", ("bgtone", 1)), _h(0, 4, "noise"),
    _h(1, 0, "mono", ("shape", 1)), _h(1, 1, "mono", ("size", 1)), _h(1, 2, "mixture", ("colour", 0.7), ("position", 0.3)),
    _h(1, 3, "hash", ("colour", 0.5), ("shape", 0.5)), _h(1, 4, "free"),
    _h(2, 0, "mono", ("position", 1)), _h(2, 1, "mono", ("texture", 1)), _h(2, 2, "mono", ("rim", 1)),
    _h(2, 3, "mixture", ("shape", 0.5), ("size", 0.5)), _h(2, 4, "noise"),
    _h(3, 0, "mono", ("shape", 1)), _h(3, 1, "mono", ("size", 1)), _h(3, 2, "mono", ("colour", 1)),
    _h(3, 3, "mixture", ("texture", 0.7), ("size", 0.3)), _h(3, 4, "free"),
)
LAYERS, HEADS = 4, 5

__all__ = ["PlantedHead", "POOL_FACTORS", "HIDDEN_FACTORS", "PLAN", "plan_of", "plan_table", "expected_of"]


def plan_of(model: str) -> tuple[PlantedHead, ...] | None:
    """The plan of ``model`` ("arch/tag"); None when it has none (random init, a contrastive-only control, another arch)."""
    arch, _, tag = str(model).partition("/")
    if arch != ARCH or not tag.startswith(PLANTED_TAG):
        return None
    return PLAN


def expected_of(head: PlantedHead) -> str:
    """"high" | "low" | "graded": what a CCS score should say of the head (module docstring)."""
    if head.kind == "mono":
        return "high" if head.factors[0] in POOL_FACTORS else "low"
    if head.kind == "mixture" and max(head.weights) - min(head.weights) > 1e-9:
        return "graded"
    return "low"


PLAN_SCHEMA = {"model": pl.Utf8, "layer": pl.Int64, "head": pl.Int64, "kind": pl.Utf8, "factors": pl.Utf8,
               "weights": pl.List(pl.Float64), "expected": pl.Utf8}


def plan_table(models: Sequence[str]) -> pl.DataFrame:
    """One row per planted head of every model that has a plan (models without one contribute no rows)."""
    rows = [{"model": m, "layer": h.layer, "head": h.head, "kind": h.kind, "factors": ",".join(h.factors),
             "weights": list(h.weights), "expected": expected_of(h)}
            for m in models for h in (plan_of(m) or ())]
    return pl.DataFrame(rows, schema=PLAN_SCHEMA)
