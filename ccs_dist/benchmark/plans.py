"""The plan table: per head of a model, what training planted there and the score it should get.

Columns (:data:`PLAN_SCHEMA`): model ("arch/tag"), layer, head, kind (``mono`` | ``mixture`` | ``noise`` |
``hash`` | ``free``), factors (comma-joined), weights (one per factor), expected (``high`` | ``low`` |
``graded``). A planted world ships its own plan; :func:`planted_v2_plan` builds the one of the bundled
``ccs-toy/planted_v2`` weights from :data:`ccs_dist.toy.planted.PLANTED` (12 mono heads expected high, the 4
free heads expected low). A random-init model of a planned architecture is checked against that plan, as
the control: its heads were never planted, so its checks should fail.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import polars as pl

from ccs_dist.artifacts.schemas import PLAN_SCHEMA
from ccs_dist.core.errors import UserError
from ccs_dist.toy.planted import FREE_HEAD, PLANTED

KINDS = ("mono", "mixture", "noise", "hash", "free")
EXPECTED = ("high", "low", "graded")
PLANTED_V2 = "ccs-toy/planted_v2"


def planted_v2_plan(model: str = PLANTED_V2) -> pl.DataFrame:
    """The plan of the bundled planted_v2 weights: PLANTED's heads mono / high, the free heads free / low."""
    rows = [{"model": model, "layer": l, "head": h, "kind": "mono", "factors": f, "weights": [1.0], "expected": "high"}
            for (l, h), f in sorted(PLANTED.items())]
    rows += [{"model": model, "layer": l, "head": FREE_HEAD, "kind": "free", "factors": "", "weights": [], "expected": "low"}
             for l in sorted({l for l, _ in PLANTED})]
    return pl.DataFrame(rows, schema=PLAN_SCHEMA).sort("model", "layer", "head")


def check_plan(plan: pl.DataFrame) -> pl.DataFrame:
    """The plan with its columns in order; a missing column or unknown kind / expectation is a UserError."""
    missing = [c for c in PLAN_SCHEMA if c not in plan.columns]
    if missing:
        raise UserError(f"the plan table lacks column(s) {', '.join(missing)}: it needs {', '.join(PLAN_SCHEMA)}")
    plan = plan.select(list(PLAN_SCHEMA)).cast(PLAN_SCHEMA)
    for col, known in (("kind", KINDS), ("expected", EXPECTED)):
        bad = sorted(set(plan[col].to_list()) - set(known))
        if bad:
            raise UserError(f"plan {col} {', '.join(map(str, bad))} unknown: use {', '.join(known)}")
    return plan


def plans_for_run(plan: pl.DataFrame, models: Iterable[str], random_init: Mapping[str, bool]) -> pl.DataFrame:
    """The plan of every model of a run: its own rows, or for a random-init model the plan of the first
    planned model of its architecture (the control); a model with neither gets none (no checks)."""
    plan = check_plan(plan)
    planned = plan["model"].unique(maintain_order=True).to_list()
    out = [plan]
    for model in models:
        if model in planned or not random_init.get(model, False):
            continue
        arch = model.split("/")[0]
        source = next((p for p in planned if p.split("/")[0] == arch), None)
        if source is not None:
            out.append(plan.filter(pl.col("model") == source).with_columns(pl.lit(model).alias("model")))
    return pl.concat(out).filter(pl.col("model").is_in(list(models)))


def plan_factor(factors: str, weights: list[float]) -> str | None:
    """The factor a head carries most of (the first on ties); None for a head planted with none."""
    names = [f for f in (factors or "").split(",") if f]
    if not names:
        return None
    w = list(weights) if weights is not None and len(weights) == len(names) else [1.0] * len(names)
    return names[max(range(len(names)), key=lambda i: w[i])]
