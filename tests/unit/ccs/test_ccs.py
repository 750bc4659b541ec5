"""CCS, CCS@K, categories, majority vote and agreement metrics (pure tables)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from ccs_dist.ccs.scores import (
    CategoryThresholds,
    agreement,
    agreement_report,
    ccs_at_k,
    ccs_table,
    cohen_kappa,
    kendall_tau_b,
    majority_verdicts,
    spearman_rho,
)


def _tables(verdicts_by_head: dict[tuple[int, int], list[list[bool | None]]], model="m"):
    """verdicts_by_head[(layer, head)] = per judge, 5 verdicts."""
    labels, judg = [], []
    for (layer, head), per_judge in verdicts_by_head.items():
        labels.append({"model": model, "layer": layer, "head": head, "label": f"c{layer}{head}", "backend": "x"})
        for j, vs in enumerate(per_judge):
            for rank, v in enumerate(vs):
                judg.append({"model": model, "layer": layer, "head": head, "rank": rank, "text": f"t{rank}",
                             "label": f"c{layer}{head}", "aligned": v, "judge": f"j{j}", "error": None if v is not None else "bad"})
    schema = {"aligned": pl.Boolean, "error": pl.String}
    return pl.DataFrame(labels), pl.DataFrame(judg, schema_overrides=schema)


T, F, N = True, False, None


def test_ccs_counts_and_categories():
    labels, judg = _tables({
        (0, 0): [[T, T, T, T, T]],
        (0, 1): [[T, T, T, F, F]],
        (0, 2): [[T, F, F, F, F]],
        (0, 3): [[T, T, T, T, F]],
        (1, 0): [[F, F, F, F, F]],
        (1, 1): [[T, T, N, T, T]],
    })
    c = ccs_table(labels, judg)
    got = {(r["layer"], r["head"]): (r["ccs"], r["category"], r["flagged"]) for r in c.iter_rows(named=True)}
    assert got == {(0, 0): (5, "high", False), (0, 1): (3, "moderate", False), (0, 2): (1, "low", False),
                   (0, 3): (4, "other", False), (1, 0): (0, "low", False), (1, 1): (4, "other", True)}
    k = ccs_at_k(c)
    assert k["fraction"].sum() == pytest.approx(1.0)
    assert k.filter(pl.col("k") == 5)["fraction"].item() == pytest.approx(1 / 5)  # flagged head left out
    assert set(k["n_flagged"]) == {1} and set(k["n_heads"]) == {5}


def test_thresholds_configurable_and_validated():
    labels, judg = _tables({(0, 0): [[T, T, T, T, F]]})
    c = ccs_table(labels, judg, CategoryThresholds(high=4, moderate=2, low=0))
    assert c["category"].item() == "high"
    with pytest.raises(ValueError):
        CategoryThresholds(high=3, moderate=3, low=1)


def test_majority_vote_over_judges():
    labels, judg = _tables({(0, 0): [[T, T, F, N, N], [T, F, F, T, N], [F, T, F, T, N]]})
    m = majority_verdicts(judg)
    # rank 0: 2 of 3 aligned; rank 1: 2/3; rank 2: 0/3; rank 3: 2 valid of 3, both aligned; rank 4: none valid
    assert m["aligned"].to_list() == [True, True, False, True, None]
    c = ccs_table(labels, judg)
    assert c.row(0, named=True)["ccs"] == 3 and c["flagged"].item() and c["n_failed"].item() == 1


def test_majority_needs_more_than_half_valid():
    _, judg = _tables({(0, 0): [[T, T, T, T, T], [N, F, T, T, T]]})
    m = majority_verdicts(judg)
    # two judges: rank 0 has 1 valid of 2 -> failed; rank 1 is a tie -> not aligned
    assert m["aligned"].to_list()[:2] == [None, False]


def test_all_flagged_model_gives_null_fractions():
    labels, judg = _tables({(0, 0): [[N, T, T, T, T]]})
    k = ccs_at_k(ccs_table(labels, judg))
    assert k["fraction"].null_count() == 6 and k["n_heads"][0] == 0


def test_agreement_metrics_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, 200)
    b = np.where(rng.random(200) < 0.8, a, 1 - a)
    assert spearman_rho(a, b) == pytest.approx(stats.spearmanr(a, b).statistic)
    assert kendall_tau_b(a, b) == pytest.approx(stats.kendalltau(a, b).statistic)
    x, y = rng.integers(0, 6, 100), rng.integers(0, 6, 100)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic)


def test_cohen_kappa_known_values():
    a = np.array([1, 1, 0, 0, 1, 0, 1, 0, 1, 1])
    assert cohen_kappa(a, a) == 1.0
    bal = np.array([1, 0] * 5)
    assert cohen_kappa(bal, 1 - bal) == pytest.approx(-1.0)
    # 2x2 table [[20, 5], [10, 15]]: po = .7, pe = .5*.6 + .5*.4 = .5 -> kappa .4
    x = np.array([1] * 25 + [0] * 25)
    y = np.array([1] * 20 + [0] * 5 + [1] * 10 + [0] * 15)
    assert cohen_kappa(x, y) == pytest.approx(0.4)
    assert math.isnan(cohen_kappa(np.ones(5), np.ones(5)))


def test_agreement_report_levels():
    rows = [{"model": "m", "layer": 0, "head": h, "rank": r, "a": bool((h + r) % 2), "b": bool((h + r) % 2)} for h in range(4) for r in range(5)]
    rep = agreement_report(pl.DataFrame(rows))
    assert rep["level"].to_list() == ["verdict", "ccs"]
    assert rep.filter(pl.col("level") == "verdict")["cohen_kappa"].item() == pytest.approx(1.0)
    assert agreement(np.array([0, 1]), np.array([0, 1]))["raw_agreement"] == 1.0


def _ccs_0_to_5_tables():
    """One head of each CCS 0..5 (one judge)."""
    return _tables({(0, c): [[True] * c + [False] * (5 - c)] for c in range(6)})


def _categories(thresholds) -> dict[int, str]:
    c = ccs_table(*_ccs_0_to_5_tables(), thresholds)
    return {r["ccs"]: r["category"] for r in c.iter_rows(named=True)}


PAPER_CATEGORIES = {0: "low", 1: "low", 2: "other", 3: "moderate", 4: "other", 5: "high"}


def _cli_score_config(*args: str):
    """The score config ``ccs-dist score ARGS`` builds (its flags parsed, nothing scored)."""
    from ccs_dist.cli import Commands
    from ccs_dist.cli.flags import parse_command
    from ccs_dist.cli.score import score_config

    kw = parse_command("ccs-dist score", Commands.score, list(args))
    return score_config(kw["llm"], judges=kw.get("judges"), cache_dir="c", progress=False)


def test_the_cli_and_job_score_configs_use_the_paper_categories():
    """The score config the CLI and the job build (not only ccs.py's defaults): a CCS-2 head is ``other``."""
    from ccs_dist.jobs.spec import load_spec

    cli = _cli_score_config("--backend", "offline", "--concurrency", "4", "--max-attempts", "3")
    job = load_spec("demo").score_config(show_progress=False)
    for config in (cli, job):
        assert _categories(config.thresholds) == PAPER_CATEGORIES
    assert _categories(CategoryThresholds()) == PAPER_CATEGORIES


def test_report_and_head_sets_categorise_like_the_score_stage():
    """The report (tables without a category column) and the head sets derive categories from the one home."""
    from ccs_dist.ccs.scores import PAPER_THRESHOLDS

    assert {c: PAPER_THRESHOLDS.category(c) for c in range(6)} == PAPER_CATEGORIES
    assert PAPER_THRESHOLDS.category(5, flagged=True) == "other" and PAPER_THRESHOLDS.category(None) == "other"


def test_the_offline_scoring_reaches_the_score_config_from_the_cli_and_the_spec(tmp_path):
    """``--scoring`` and ``llm.offline_scoring``: normalised by default, cosine on request, anything else refused."""
    from ccs_dist.core.errors import UserError
    from ccs_dist.jobs.spec import load_spec

    assert _cli_score_config("--backend", "offline").offline_scoring == "normalised"
    assert _cli_score_config("--backend", "offline", "--scoring", "cosine").offline_scoring == "cosine"
    assert _cli_score_config("--backend", "offline", "--offline-scoring", "cosine").offline_scoring == "cosine"
    with pytest.raises(UserError, match="unknown offline_scoring 'dot'"):
        _cli_score_config("--backend", "offline", "--scoring", "dot")
    assert load_spec("demo").score_config(show_progress=False).offline_scoring == "normalised"
    spec = tmp_path / "s.yaml"
    spec.write_text("run: s\nmodels: [{arch: ccs-tiny, pretrained: none}]\nllm: {backend: offline, offline_scoring: cosine}\n")
    assert load_spec(str(spec)).score_config(show_progress=False).offline_scoring == "cosine"
