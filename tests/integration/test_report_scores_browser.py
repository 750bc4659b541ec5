"""The Scores section in a real headless chromium: a click on a score's column header re-orders the heads."""

from __future__ import annotations

import polars as pl

from ccs_dist.report import write_report
from tests.support.paths import REPO
from tests.support.report_fixtures import FixtureModel, FixtureSpec, make_run
from tests.support.score_tables import write_score_tables

ROWS = "Array.from(document.querySelectorAll('#score-table-0 tbody tr'))"


def _index(browser, score: str) -> int:
    return browser.eval(f"Array.from(document.querySelectorAll('#score-table-0 thead th')).findIndex(th => th.dataset.score === '{score}')")


def _column(browser, score: str) -> list:
    """The heads in the order shown, and the sort keys of the ``score`` column (None for a missing value)."""
    idx = _index(browser, score)
    return browser.eval(f"{ROWS}.map(r => [r.cells[0].textContent, r.cells[{idx}].getAttribute('data-sort')])")


def test_clicking_a_score_header_sorts_the_heads_by_it(browser, tmp_path):
    run = make_run(tmp_path / "run", FixtureSpec(models=(FixtureModel("ViT-B-32", "openai", 6, 6, 3),), head_images=False))
    hs = write_score_tables(run)["head_scores"]
    page = write_report(run)
    browser.open(page, offline=True)
    assert browser.eval("document.documentElement.getAttribute('data-ready')") == "1"
    before = _column(browser, "detection_auroc")
    assert len(before) == hs.select("layer", "head").unique().height
    browser.click('#score-table-0 th[data-score="detection_auroc"]')
    asc = _column(browser, "detection_auroc")
    assert [h for h, _ in asc] != [h for h, _ in before], "the click did not change the row order"
    want = hs.filter(pl.col("score") == "detection_auroc").sort("value")
    assert [float(v) for _, v in asc] == [float(f"{v:.6g}") for v in want["value"].to_list()]
    assert [h for h, _ in asc] == [f"L{r['layer']}.H{r['head']}" for r in want.iter_rows(named=True)]
    browser.click('#score-table-0 th[data-score="detection_auroc"]')
    desc = _column(browser, "detection_auroc")
    assert [float(v) for _, v in desc] == sorted((float(v) for _, v in asc), reverse=True)
    # the intervals are shown as value [lo, hi]; a click on the head opens its card
    first = browser.eval(f"{ROWS}[0].cells[{_index(browser, 'detection_auroc')}].textContent")
    assert first.count("[") in (0, 1) and first.split(" ")[0] == f"{float(desc[0][1]):.2f}"
    browser.click("#score-table-0 tbody tr:first-child button.headlink")
    assert browser.eval("document.getElementById('head-card').getAttribute('data-head')") == desc[0][0]
    browser.eval("document.getElementById('head-card').close()")
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    browser.screenshot(REPO / "test-artifacts" / "report_scores.png", full_page=True)
    assert browser.problems() == []
