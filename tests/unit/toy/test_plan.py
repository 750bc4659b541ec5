"""The planted plan contract of ccs-plant (ccs_dist.toy.plan)."""

from __future__ import annotations

import polars as pl

from ccs_dist.data.planted import world
from ccs_dist.toy.plan import HEADS, HIDDEN_FACTORS, LAYERS, PLAN, POOL_FACTORS, plan_of, plan_table


def test_every_head_has_one_kind_and_the_kinds_cover_the_design():
    assert sorted((h.layer, h.head) for h in PLAN) == [(l, h) for l in range(LAYERS) for h in range(HEADS)]
    assert {h.kind for h in PLAN} == {"mono", "mixture", "noise", "hash", "free"}
    for h in PLAN:
        assert len(h.factors) == len(h.weights) and set(h.factors) <= set(world.FACTOR_NAMES)
        assert (not h.factors) == (h.kind in ("noise", "free"))
        assert not h.weights or abs(sum(h.weights) - 1) < 1e-9
    mono = [h.factors[0] for h in PLAN if h.kind == "mono"]
    assert all(mono.count(f) >= 2 for f in POOL_FACTORS) and all(f in mono for f in HIDDEN_FACTORS)
    assert POOL_FACTORS == world.POOL_FACTORS and HIDDEN_FACTORS == world.HIDDEN_FACTORS


def test_only_planted_models_have_a_plan():
    assert plan_of("ccs-plant/plant_s1") == PLAN
    assert plan_of("ccs-plant/contrastive_s1") is None and plan_of("ccs-plant/none") is None
    assert plan_of("ccs-toy/plant_s0") is None


def test_plan_table_schema_and_expectations():
    table = plan_table(["ccs-plant/plant_s0", "ccs-plant/contrastive_s0", "ccs-plant/plant_s2"])
    assert table.schema == {"model": pl.Utf8, "layer": pl.Int64, "head": pl.Int64, "kind": pl.Utf8, "factors": pl.Utf8,
                            "weights": pl.List(pl.Float64), "expected": pl.Utf8}
    assert table.height == 2 * len(PLAN) and set(table["model"]) == {"ccs-plant/plant_s0", "ccs-plant/plant_s2"}
    one = table.filter(pl.col("model") == "ccs-plant/plant_s0")
    expected = dict(zip(zip(one["layer"], one["head"]), one["expected"]))
    assert expected[(0, 0)] == "high" and expected[(0, 3)] == "low" and expected[(2, 2)] == "low"  # colour, hidden
    assert expected[(1, 2)] == "graded" and expected[(2, 3)] == "low"  # 70/30, 50/50
    assert {expected[(h.layer, h.head)] for h in PLAN if h.kind in ("noise", "hash", "free")} == {"low"}
    assert one.filter(pl.col("expected") == "high").height == 10
    assert plan_table([]).height == 0
