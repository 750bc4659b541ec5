"""The report's Benchmark section shows every check of the run with its null and p-value."""

from __future__ import annotations

import polars as pl

from ccs_dist.artifacts.run_dir import RunDir
from ccs_dist.artifacts.schemas import write_table
from ccs_dist.benchmark.tables import benchmark_tables
from ccs_dist.report import write_report
from ccs_dist.report.html import esc
from tests.support.benchmark_world import CONCEPT_MAP, CONFIG, MODEL, world_tables
from tests.support.report_fixtures import FixtureModel, FixtureSpec, make_run


def test_every_check_is_on_the_page_with_its_null(tmp_path):
    run = make_run(tmp_path / "run", FixtureSpec(models=(FixtureModel("ViT-B-32", "openai"),), tasks=("cifar10",),
                                                 head_images=False))
    out = benchmark_tables(world_tables(), {MODEL: False}, config=CONFIG, concept_map=CONCEPT_MAP)
    for name, df in out.items():
        write_table(df, RunDir(run).table(name))
    text = write_report(run).read_text(encoding="utf-8")
    assert '<section id="benchmark"' in text
    section = text.split('<section id="benchmark"', 1)[1].split("</section>", 1)[0]
    checks = out["benchmark_checks"]
    for check in checks["check"].unique().to_list():
        assert esc(check) in section, check
    assert section.count("✗ fail") == checks.filter(~pl.col("passed")).height
    assert "null p95" in section and "η² factor" in section
