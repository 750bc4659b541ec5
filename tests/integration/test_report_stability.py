"""Span stability and stage precision in the report, in a real browser: a bar under each grid cell's CCS,
a badge on the head card, a column in the head table, a precision table in the run summary."""

from __future__ import annotations

import json

import polars as pl

from ccs_dist.report import write_report
from tests.support.report_fixtures import FixtureSpec, make_run
from tests.support.browser import query_all as _q


def _add_span_facts(run) -> pl.DataFrame:
    """The fixture run, with the per-head span facts the spans stage writes and the manifest's precisions."""
    ccs = pl.read_parquet(run / "tables" / "ccs.parquet")
    facts = ccs.select("model", "layer", "head").with_row_index("i").with_columns(
        stability=(pl.col("i") % 5).cast(pl.Float64) / 4, span1_stability=pl.lit(1.0),
        requested_rank=pl.lit(80, pl.Int64), effective_rank=pl.lit(65, pl.Int64)).drop("i")
    ccs = ccs.join(facts, on=["model", "layer", "head"])
    ccs.write_parquet(run / "tables" / "ccs.parquet")
    manifest = json.loads((run / "manifest.json").read_text())
    for m in manifest.get("models", []):
        m["stage_precision"] = {"decompose": "fp32", "text_embeddings": "fp32", "textspan": "fp64", "evaluate": "bf16"}
    (run / "manifest.json").write_text(json.dumps(manifest))
    return ccs


def test_stability_beside_ccs_in_grid_card_and_table(browser, tmp_path):
    run = make_run(tmp_path / "demo", FixtureSpec())
    ccs = _add_span_facts(run)
    page = write_report(run)
    browser.open(page, offline=True)
    assert _q(browser, ".ccsgrid .cell.stab") == ccs.height
    assert _q(browser, ".ccsgrid .cell.unstable") == ccs.filter(pl.col("stability") < 0.5).height > 0
    r = ccs.filter(pl.col("stability") == 0.25).row(0, named=True)
    hk = f"L{r['layer']}.H{r['head']}"
    width = browser.eval(f"getComputedStyle(document.querySelector('.cell[data-h=\"{hk}\"]'), '::after').width")
    full = browser.eval(f"document.querySelector('.cell[data-h=\"{hk}\"]').clientWidth")
    assert abs(float(width.rstrip("px")) - 0.25 * (full - 6)) < 1.5  # the bar's width is the stability
    browser.click(f'.cell[data-h="{hk}"]')
    badge = browser.eval("document.querySelector('#head-card .badge.stab').textContent")
    assert badge == "span stability 0.25 · span 1 kept 100%"
    assert "rank 65 of 80 requested" in browser.eval("document.querySelector('#head-card .badges').textContent")
    html = page.read_text(encoding="utf-8")
    assert "Precision per stage" in html and "span stability" in html
    assert browser.problems() == []
