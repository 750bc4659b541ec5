"""The "Scores" section from synthetic head-card tables in their parquet format; absent tables hide it."""

from __future__ import annotations

import re

import polars as pl
import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.report import write_report
from ccs_dist.report.formatting import interval
from tests.support.report_fixtures import FixtureModel, FixtureSpec, make_run
from tests.support.score_tables import write_score_tables


def _spec() -> FixtureSpec:
    return FixtureSpec(models=(FixtureModel("ViT-B-32", "openai", 4, 4, 2), FixtureModel("ViT-B-16", "laion2b", 4, 4, 2)),
                       head_images=False, attribution=False)


def test_interval_text():
    assert interval(0.7234, 0.6111, 0.8) == "0.72 [0.61, 0.80]"
    assert interval(0.7, None, 0.8) == "0.70" and interval(None, 0.1, 0.2) == "–"
    assert interval(float("nan")) == "–" and interval(0.1234, 0.1, 0.2, 3) == "0.123 [0.100, 0.200]"


def test_the_section_shows_every_head_score_interval_scatter_and_agreement(tmp_path):
    run = make_run(tmp_path / "run", _spec())
    frames = write_score_tables(run)
    html = write_report(run).read_text(encoding="utf-8")
    assert '<section id="scores"' in html and 'href="#scores"' in html
    hs = frames["head_scores"]
    for m_index in (0, 1):
        table = html.split(f'id="score-table-{m_index}"', 1)[1].split("</table>", 1)[0]
        model = hs["model"].unique(maintain_order=True)[m_index]
        assert table.count("<tr>") == 1 + hs.filter(pl.col("model") == model).select("layer", "head").unique().height
        assert re.findall(r'data-score="([a-z_]+)"', table) == list(dict.fromkeys(hs["score"].to_list()))
    r = hs.filter(pl.col("lo").is_not_null() & (pl.col("score") == "detection_auroc")).row(0, named=True)
    assert interval(r["value"], r["lo"], r["hi"]) in html
    section = html.split('<section id="scores"', 1)[1].split("</section>", 1)[0]
    assert section.count('class="chart scatter"') == 2 and section.count("detection AUROC against CCS") == 4  # label + title
    assert html.count('class="data sortable agreement-table"') == 2
    ag = frames["score_agreement"].row(0, named=True)
    assert f"{ag['spearman']:.2f}" in html
    assert "0.167 [0.100, 0.250]" in html and "CCS@K with intervals" in html


def test_without_the_tables_there_is_no_section_and_no_error(tmp_path):
    html = write_report(make_run(tmp_path / "run", _spec())).read_text(encoding="utf-8")
    assert 'id="scores"' not in html and "score-table" not in html


def test_only_intervals_show_only_intervals(tmp_path):
    run = make_run(tmp_path / "run", _spec())
    write_score_tables(run)
    (run / "tables" / "head_scores.parquet").unlink()
    (run / "tables" / "score_agreement.parquet").unlink()
    html = write_report(run).read_text(encoding="utf-8")
    assert "CCS@K with intervals" in html and "No head_scores table" in html and "score-table-0" not in html


def test_a_head_scores_table_without_its_columns_is_one_line_error(tmp_path):
    run = make_run(tmp_path / "run", _spec())
    pl.DataFrame({"model": ["m"], "layer": [0]}).write_parquet(run / "tables" / "head_scores.parquet")
    with pytest.raises(UserError, match="lacks columns head, score, value") as e:
        write_report(run)
    assert "\n" not in str(e.value)
