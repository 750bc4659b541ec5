"""The report's edges (issue 14): manifest paths cannot make it write outside the run, CSV cells cannot
run as spreadsheet formulas, a megabyte description does not freeze its card, flagged heads are listed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest

from ccs_dist.report import write_report
from tests.support.report_fixtures import FixtureSpec, make_run
from ccs_dist.artifacts.schemas import csv_safe, csv_unescape


def test_a_manifest_path_cannot_lead_the_report_outside_the_run(tmp_path):
    run = make_run(tmp_path / "run", FixtureSpec(attribution=False))
    outside = tmp_path / "outside"
    outside.mkdir()
    pl.read_parquet(run / "tables" / "spans.parquet").write_parquet(outside / "x.parquet")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["tables"]["evil"] = "../outside/x.parquet"
    manifest["tables"]["abs"] = str(outside / "x.parquet")
    (run / "manifest.json").write_text(json.dumps(manifest))
    page = write_report(run)
    assert sorted(p.name for p in outside.iterdir()) == ["x.parquet"]  # no x.csv written there
    assert "points outside the run directory" in page.read_text()


def test_csv_cells_cannot_run_as_formulas(tmp_path):
    run = make_run(tmp_path / "run", FixtureSpec(attribution=False))
    spans = pl.read_parquet(run / "tables" / "spans.parquet")
    evil = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "'=already quoted", "plain - text"]
    spans = spans.with_columns(text=pl.Series([evil[i] if i < len(evil) else t for i, t in enumerate(spans["text"])]))
    spans.write_parquet(run / "tables" / "spans.parquet")
    write_report(run)
    cells = pl.read_csv(run / "tables" / "spans.csv", infer_schema_length=0)["text"].to_list()[: len(evil)]
    assert cells == ['\'=HYPERLINK("http://x","y")', "'+1+1", "'-2+3", "'@SUM(A1)", "''=already quoted", "plain - text"]
    assert csv_unescape(pl.DataFrame({"t": cells}))["t"].to_list() == evil  # exact round trip
    nums = pl.DataFrame({"v": [-1.5]})
    assert csv_safe(nums).equals(nums)  # numbers are not text


def test_a_megabyte_description_shows_short_with_the_full_text_on_demand(browser, tmp_path):
    run = make_run(tmp_path / "run", FixtureSpec(attribution=False))
    spans = pl.read_parquet(run / "tables" / "spans.parquet")
    first = spans.row(0, named=True)
    huge = "a very long description " * 45_000  # ~1 MB
    spans = spans.with_columns(text=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(huge)).otherwise(pl.col("text")))
    spans.write_parquet(run / "tables" / "spans.parquet")
    page = write_report(run)
    assert page.stat().st_size < 2_000_000
    browser.open(page, offline=True)
    hk = f"L{first['layer']}.H{first['head']}"
    t0 = time.monotonic()
    browser.click(f'.cell[data-h="{hk}"]')
    assert browser.eval("document.getElementById('head-card').open") is True
    assert time.monotonic() - t0 < 10
    shown = browser.eval("document.querySelector('#head-card td.desc-text').textContent")
    assert shown.startswith("a very long description") and len(shown) < 400 and f"show all {len(huge)} characters" in shown
    browser.click("#head-card button.show-all")
    assert browser.eval("document.querySelector('#head-card textarea.fulltext').value.length") == 20_000
    assert "whole text is in tables/spans.csv" in browser.eval("document.querySelector('#head-card td.desc-text').textContent")
    assert browser.problems() == []


def test_flagged_heads_are_listed_with_their_reason(tmp_path):
    run = make_run(tmp_path / "run", FixtureSpec(attribution=False, failed_heads=2))
    html = write_report(run).read_text()
    assert "Flagged heads: scored with failed verdicts" in html
