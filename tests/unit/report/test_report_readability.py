"""The report reads at a glance: round ticks, no hidden markers, labelled grid, sample sizes, honest LLM and time tables."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

from ccs_dist.report import charts, write_report
from tests.support.report_fixtures import FixtureSpec, make_run


@pytest.mark.parametrize("lo, hi, want", [
    (-2.4, 11.5, [-5, 0, 5, 10, 15]),
    (0.0, 0.38, [0.0, 0.1, 0.2, 0.3, 0.4]),
    (20.0, 90.0, [20, 40, 60, 80, 100]),
    (0.0, 0.26, [0.0, 0.1, 0.2, 0.3]),
])
def test_ticks_are_round_numbers(lo, hi, want):
    ticks = charts.nice_ticks(lo, hi, 5)
    assert ticks == pytest.approx(want)
    assert ticks[0] <= lo and ticks[-1] >= hi


def test_tick_labels_carry_only_the_digits_the_step_needs():
    assert [charts.tick_text(v, [0, 0.25, 0.5], pct=True) for v in (0, 0.25, 0.5)] == ["0 %", "25 %", "50 %"]
    assert [charts.tick_text(v, [-5, 0, 5]) for v in (-5, 0, 5)] == ["-5", "0", "5"]
    assert charts.tick_text(0.25, [0, 0.25, 0.5]) == "0.25"


def _marker_centres(svg: str) -> list[tuple[float, float]]:
    """Centre of every marker, in document order."""
    out = []
    for m in re.finditer(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="[\d.]+" fill="#|<rect x="([\d.]+)" y="([\d.]+)" width="8.0"'
                         r'|<polygon points="([\d.]+),([\d.]+) ', svg):
        g = [float(x) for x in m.groups() if x is not None]
        out.append((g[0] + 4, g[1] + 4) if m.group(3) else (g[0], g[1]))
    return out


def test_equal_values_in_a_dot_plot_do_not_hide_each_other():
    same = {c: (50.0, None) for c in ("original", "high", "low", "moderate", "equal:high", "equal:low", "concept:animal",
                                      "concept:location")}
    same["random"] = (50.0, 1.0)
    svg = charts.pruning_dotplot("t", "top1", [("m1", same), ("m2", same)])
    plotted = _marker_centres(svg)[: 2 * len(same)]  # the legend's markers come after the plotted ones
    assert len(set(plotted)) == len(plotted) == 2 * len(same), "two markers share a position"
    assert 'fill-opacity="0.75"' in svg  # and overlapping ones show through
    ticks = [t for t in re.findall(r'class="tick" text-anchor="middle">([^<]+)<', svg)]
    assert all(re.fullmatch(r"-?\d+(\.\d)?", t.replace(",", "")) for t in ticks), ticks


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """A fixture run made to look like a re-run of an offline-judge full grid: stages reused, their manifests on disk."""
    run = make_run(tmp_path_factory.mktemp("offline") / "run", FixtureSpec(agreement=False))
    man = json.loads((run / "manifest.json").read_text())
    key = man["models"][0]["model"]
    man["spec"]["llm"] = {"backend": "offline", "offline_embedder": "minilm"}
    man["llm"] = {"requests": 0, "cache_hits": 0, "cache_misses": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
                  "cost_avoided_usd": 0.0, "score_stages_reused": 1}
    man["stages"] = [{"model": key, "stage": s, "seconds": 0.0, "reused": True} for s in ("spans", "score", "evaluate")]
    for stage, seconds in (("spans", 42.0), ("score", 7.5), ("evaluate", 90.0)):
        d = run / "stages" / "m" / stage
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps({"model": key, "stage": stage, "key": "k", "tables": [], "seconds": seconds}))
    (run / "manifest.json").write_text(json.dumps(man))
    page = write_report(run, paper_reference=None)
    return run, page.read_text(encoding="utf-8")


def test_stage_times_are_what_the_artifacts_cost(offline_run):
    _, text = offline_run
    section = text[text.index("Time per stage"):text.index("LLM usage")]
    for shown in ("42.0 s", "7.5 s", "1.5 min"):
        assert shown in section
    assert section.count("badge reused") == 3 and "0.0 s" not in section


def test_llm_usage_says_no_llm_was_used(offline_run):
    _, text = offline_run
    section = text[text.index("LLM usage"):text.index("Job spec")]
    assert "No LLM was used" in section and "offline judge" in section
    assert "score_stages_reused" not in section and "<th></th>" not in text


def test_grid_labels_and_sample_sizes_show_without_a_click(offline_run):
    run, text = offline_run
    ccs = pl.read_parquet(run / "tables" / "ccs.parquet")
    r = ccs.row(0, named=True)
    cell = re.search(rf'<button[^>]*data-h="L{r["layer"]}.H{r["head"]}"[^>]*>(.*?)</button>', text).group(1)
    assert '<span class="lab">' in cell and r["label"][:10] in cell
    assert f"n = {ccs.height - 1} heads" in text  # mean CCS with its sample size (one head flagged)
    assert "n = 10,000 test items" in text and "3 seeds" in text


def test_agreement_says_why_it_is_empty(tmp_path):
    run = make_run(tmp_path / "run", FixtureSpec(agreement=False))
    missing = tmp_path / "none.json"
    missing.write_text("{}")
    text = write_report(run, paper_reference=missing).read_text(encoding="utf-8")
    assert 'id="agreement"' in text and 'id="no-agreement"' in text
    assert "no agreement table" in text and "LLM-vs-human figures are not available" in text
