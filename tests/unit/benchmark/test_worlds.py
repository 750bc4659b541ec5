"""The benchmark takes its world (factors, task prefix, concept map) from the run, and a control its architecture's plan."""

from __future__ import annotations

import polars as pl
import pytest

from ccs_dist.benchmark.plans import is_control, plans_for_run, run_plan
from ccs_dist.benchmark.tables import benchmark_tables
from ccs_dist.benchmark.worlds import PLANT, TOY, check_world, world_of_factors, world_of_probe
from ccs_dist.core.errors import UserError
from ccs_dist.data.planted import text as plant_text
from ccs_dist.data.planted.world import FACTOR_NAMES as PLANT_FACTORS
from ccs_dist.toy.plan import PLAN, expected_of
from tests.support.benchmark_world import CONCEPT_MAP, CONFIG, MODEL, world_tables

PLANTED, CONTROL, RANDOM = "ccs-plant/plant_s0", "ccs-plant/contrastive_s0", "ccs-plant/random-init"


def test_the_plant_world_is_told_by_its_probe_set_and_factors():
    assert world_of_probe("plant:64") is PLANT and world_of_probe("toy:512") is TOY and world_of_probe("synthetic:8") is None
    assert PLANT.factors == PLANT_FACTORS and {"bgtone", "rim"} <= set(PLANT.factors)
    assert PLANT.concept_map() == plant_text.concept_map() and PLANT.concept_map() != TOY.concept_map()
    assert PLANT.tasks(["plant-colour", "toy-shape", "plant-rim@/x", "fairface"]) == ("plant-colour", "plant-rim@/x")
    assert world_of_factors(PLANT_FACTORS) is PLANT and world_of_factors(TOY.factors) is TOY
    with pytest.raises(UserError, match="fit no benchmark world"):
        world_of_factors(["colour", "flavour"])


def test_a_mismatched_world_is_refused():
    with pytest.raises(UserError, match="mixes worlds"):
        check_world(TOY, PLANT_FACTORS)
    with pytest.raises(UserError, match="mixes worlds"):  # plant world, toy-<factor> tasks
        benchmark_tables(world_tables(), {MODEL: False}, config=CONFIG, concept_map=CONCEPT_MAP, world=PLANT)


def _as_plant(tables: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The toy test world's tables with plant-<factor> tasks and a hidden factor (bgtone) in the ground truth."""
    out = dict(tables)
    out["direct_ablation"] = tables["direct_ablation"].with_columns(pl.col("task").str.replace("^toy-", "plant-"))
    gt = tables["ground_truth"]
    hidden = gt.filter(pl.col("factor") == "colour").with_columns(pl.lit("bgtone").alias("factor"), pl.lit(0.02).alias("variance_share"))
    out["ground_truth"] = pl.concat([gt, hidden])
    return out


def test_the_generic_benchmark_reads_plant_tasks_and_misses_a_hidden_factor():
    tables = _as_plant(world_tables())
    checks = {r["check"]: r for r in benchmark_tables(tables, {MODEL: False}, config=CONFIG, concept_map=CONCEPT_MAP)
              ["benchmark_checks"].filter(pl.col("model") == MODEL).iter_rows(named=True)}
    assert checks["concept specificity: colour"]["passed"] and checks["concept specificity: shape"]["passed"]
    # bgtone is assessed: no label names it, so its checks are misses (no p-value), never passes
    for c in ("concept specificity: bgtone", "label recovery: bgtone"):
        assert checks[c]["p_value"] is None and not checks[c]["passed"]
    # the same tables read as the toy world are refused: bgtone is no toy factor
    with pytest.raises(UserError, match="mixes worlds"):
        benchmark_tables(tables, {MODEL: False}, config=CONFIG, concept_map=CONCEPT_MAP, world=TOY)


def test_controls_get_their_architectures_plan_as_controls():
    models = [PLANTED, CONTROL, RANDOM, "ccs-plant/other", "ccs-toy/planted_v2"]
    random_init = {RANDOM: True}
    assert is_control(CONTROL, random_init) and is_control(RANDOM, random_init) and not is_control(PLANTED, random_init)
    plan = plans_for_run(run_plan(models), models, random_init)
    by_model = {m: plan.filter(pl.col("model") == m).drop("model").sort("layer", "head") for m in models}
    assert by_model[PLANTED].height == len(PLAN) == 20
    assert by_model[PLANTED]["expected"].to_list() == [expected_of(h) for h in sorted(PLAN, key=lambda h: (h.layer, h.head))]
    assert by_model[CONTROL].equals(by_model[PLANTED]) and by_model[RANDOM].equals(by_model[PLANTED])
    assert by_model["ccs-plant/other"].height == 0  # neither planned nor a control: no checks
    assert by_model["ccs-toy/planted_v2"].height == 16
    # a run of controls alone still checks them against the architecture's plan
    alone = plans_for_run(run_plan([CONTROL]), [CONTROL], {})
    assert alone.height == 20 and set(alone["model"]) == {CONTROL}
