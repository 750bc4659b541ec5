"""The benchmark's checks pass on a world built to pass them and fail on its permuted, unplanted and swapped twins."""

from __future__ import annotations

import numpy as np
import polars as pl

from ccs_dist.benchmark.checks import CHECKS_SCHEMA, seed_rows
from ccs_dist.benchmark.plans import planted_v2_plan, plans_for_run
from ccs_dist.benchmark.stats import auroc, summarise
from ccs_dist.benchmark.tables import benchmark_tables
from tests.support.benchmark_world import CONCEPT_MAP, CONFIG, MODEL, planned, world_tables


def _checks(tables, random_init=None) -> dict[str, dict]:
    out = benchmark_tables(tables, random_init or {MODEL: False}, config=CONFIG, concept_map=CONCEPT_MAP)
    return {r["check"]: r for r in out["benchmark_checks"].filter(pl.col("model") == MODEL).iter_rows(named=True)}


def test_stats():
    assert auroc(np.array([3, 2, 1, 0]), np.array([1, 1, 0, 0])) == 1.0
    assert auroc(np.array([1, 1]), np.array([1, 0])) == 0.5
    assert auroc(np.array([1.0]), np.array([1])) is None
    null = summarise(1.0, [0.0] * 99)
    assert null.p_value == 0.01 and null.n == 99 and null.null_mean == 0.0
    assert summarise(0.0, [0.0] * 9).p_value == 1.0


def test_planted_world_passes_every_check_its_null_has_the_power_for():
    checks = _checks(world_tables())
    # size and texture each have 2 heads in 2 layers of 4: a layer-matched random set is the planted one with
    # probability 1/16, so their specificity p cannot go below ~0.06 (the null's power, stated in docs/benchmark.md)
    underpowered = {"concept specificity: size", "concept specificity: texture"}
    failed = [c for c, r in checks.items() if not r["passed"] and c not in underpowered]
    assert not failed, failed
    for c in underpowered:
        assert checks[c]["value"] == 0.6 and 0.03 < checks[c]["p_value"] < 0.12
    assert checks["outcome 2: CCS (count) AUROC"]["value"] == 1.0
    assert checks["label recovery: label names the plan factor (expected-high heads)"]["value"] == 1.0
    assert checks["high minus low: drop of the high-CCS set less the low-CCS set's"]["passed"]  # low set: free heads


def test_permuted_ground_truth_fails_the_ground_truth_checks():
    plan = planned()
    keys = [k for k, f in plan.items() if f]
    rng = np.random.default_rng(3)
    shuffled = dict(plan)
    while all(shuffled[k] == plan[k] for k in keys[:1]) or sum(shuffled[k] == plan[k] for k in keys) > 2:
        shuffled.update(zip(keys, rng.permutation([plan[k] for k in keys])))
    checks = _checks(world_tables(truth=shuffled, labels={k: (f or "crowds") for k, f in plan.items()}))
    for truth in ("eta2", "ablation"):
        assert not checks[f"ground truth: {truth} factor is the plan factor"]["passed"]
    assert not checks["concept specificity: colour"]["passed"] or not checks["concept specificity: shape"]["passed"]


def test_unplanted_model_fails():
    """A random-init model checked against its architecture's plan: nothing planted, labels name no factor."""
    rng = np.random.default_rng(0)
    factors = ["colour", "shape", "position", "size", "texture"]
    truth = {k: factors[rng.integers(5)] for k in planned()}
    labels = {k: "crowds" if rng.random() < 0.7 else factors[rng.integers(5)] for k in planned()}
    tables = world_tables(truth=truth, labels=labels, model="ccs-toy/random-init")
    out = benchmark_tables(tables, {"ccs-toy/random-init": True}, plan=planted_v2_plan(), config=CONFIG, concept_map=CONCEPT_MAP)
    checks = out["benchmark_checks"]
    assert set(checks["model"]) == {"ccs-toy/random-init"}  # the control has no seed row
    passed = checks.filter(pl.col("passed"))["check"].to_list()
    assert len(passed) <= 2, passed  # at alpha 0.05 a chance pass or two, not the battery


def test_swapped_concept_fails_its_label_and_specificity_checks():
    plan = planned()
    swap = {"colour": "shape", "shape": "colour"}
    labels = {k: swap.get(f, f) if f else "crowds" for k, f in plan.items()}
    checks = _checks(world_tables(labels=labels))
    for f in ("colour", "shape"):
        assert not checks[f"label recovery: {f}"]["passed"] and checks[f"label recovery: {f}"]["value"] == 0.0
        assert not checks[f"concept specificity: {f}"]["passed"]
    assert checks["label recovery: size"]["passed"]  # the factors not swapped still recover


def test_a_factor_no_label_names_is_a_miss():
    plan = planned()
    labels = {k: ("crowds" if f in (None, "texture") else f) for k, f in plan.items()}
    checks = _checks(world_tables(labels=labels))
    row = checks["concept specificity: texture"]
    assert row["value"] is None and row["p_value"] is None and row["passed"] is False
    assert checks["label recovery: texture"]["value"] == 0.0 and not checks["label recovery: texture"]["passed"]


def test_seeds_are_aggregated_and_a_random_init_model_takes_its_architectures_plan():
    plan = plans_for_run(planted_v2_plan(), [MODEL, "ccs-toy/random-init", "other/x"], {"ccs-toy/random-init": True})
    assert plan.group_by("model").len().sort("model").rows() == [("ccs-toy/planted_v2", 16), ("ccs-toy/random-init", 16)]
    tables = {n: pl.concat([a, b]) for (n, a), b in zip(world_tables().items(), world_tables(model="ccs-toy/planted_s1").values())}
    out = benchmark_tables(tables, {MODEL: False, "ccs-toy/planted_s1": False}, config=CONFIG, concept_map=CONCEPT_MAP,
                           plan=pl.concat([planted_v2_plan(), planted_v2_plan("ccs-toy/planted_s1")]))
    seeds = out["benchmark_checks"].filter(pl.col("model").str.starts_with("seeds:"))
    assert set(seeds["model"]) == {"seeds:ccs-toy/planted_v2", "seeds:ccs-toy/planted"}


def test_a_seed_row_counts_only_the_seeds_where_the_check_has_a_value():
    row = lambda m, v, ok: {"model": m, "check": "c", "value": v, "spread": None, "null_mean": 0.0, "null_p95": 0.1,  # noqa: E731
                            "p_value": 0.01 if ok else 1.0, "n": 100, "passed": ok}
    checks = pl.DataFrame([row("a/x_s0", 0.4, True), row("a/x_s1", None, False), row("a/x_s2", 0.2, True)], schema=CHECKS_SCHEMA)
    (out,) = seed_rows(checks, ["a/x_s0", "a/x_s1", "a/x_s2"]).iter_rows(named=True)
    assert out["model"] == "seeds:a/x" and out["n"] == 2 and abs(out["value"] - 0.3) < 1e-12
    assert abs(out["spread"] - np.std([0.4, 0.2], ddof=1)) < 1e-12 and out["passed"] is False  # the miss fails the family
    (all_ok,) = seed_rows(checks.filter(pl.col("value").is_not_null()), ["a/x_s0", "a/x_s2"]).iter_rows(named=True)
    assert all_ok["passed"] is True and all_ok["n"] == 2
