"""The plan table: per head of a model, what training planted there and the score it should get.

Columns (:data:`PLAN_SCHEMA`): model ("arch/tag"), layer, head, kind (``mono`` | ``mixture`` | ``noise`` |
``hash`` | ``free``), factors (comma-joined), weights (one per factor), expected (``high`` | ``low`` |
``graded``). A planted world ships its own plan; :func:`planted_v2_plan` builds the one of the bundled
``ccs-toy/planted_v2`` weights from :data:`ccs_dist.toy.planted.PLANTED` (12 mono heads expected high, the 4
free heads expected low). A random-init model of a planned architecture is checked against that plan, as
the control: its heads were never planted, so its checks should fail. So is a contrastive-only control of a
planted world (``ccs-plant/contrastive_s<seed>``, :mod:`ccs_dist.toy.plan`: same architecture and seed, no
planting loss), against the plan of the planted model of its seed where the run has it.
"""

from __future__ import annotations

import re

from collections.abc import Iterable, Mapping, Sequence

import polars as pl

from ccs_dist.artifacts.schemas import PLAN_SCHEMA
from ccs_dist.core.errors import UserError
from ccs_dist.toy import plan as plant_plan
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


def run_plan(models: Sequence[str]) -> pl.DataFrame:
    """The plans a job run passes: planted_v2's and ccs-plant's (:func:`plant_plan.plan_table`) for every model
    with one, plus ``plant_s0``'s, so a run of controls alone still has their architecture's plan."""
    planted = list(dict.fromkeys([*models, f"{plant_plan.ARCH}/{plant_plan.PLANTED_TAG}0"]))
    return pl.concat([planted_v2_plan(), check_plan(plant_plan.plan_table(planted))])


def is_control(model: str, random_init: Mapping[str, bool]) -> bool:
    """Random init, or a planted world's contrastive-only control (``ccs-plant/contrastive_s<seed>``)."""
    arch, _, tag = str(model).partition("/")
    return bool(random_init.get(model, False)) or (arch == plant_plan.ARCH and tag.startswith(plant_plan.CONTROL_TAG))


def _seed(model: str) -> str | None:
    m = re.search(r"_s(\d+)$", model)
    return m.group(1) if m else None


def plans_for_run(plan: pl.DataFrame, models: Iterable[str], random_init: Mapping[str, bool]) -> pl.DataFrame:
    """The plan of every model of a run: its own rows, or for a control (:func:`is_control`) the plan of the
    planned model of its architecture and seed, else the first of its architecture; any other model gets none."""
    plan = check_plan(plan)
    planned = plan["model"].unique(maintain_order=True).to_list()
    models = list(models)
    out = [plan]
    for model in models:
        if model in planned or not is_control(model, random_init):
            continue
        arch = model.split("/")[0]
        same_arch = [p for p in planned if p.split("/")[0] == arch]
        source = next((p for p in same_arch if _seed(model) is not None and _seed(p) == _seed(model)), None) or next(iter(same_arch), None)
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
