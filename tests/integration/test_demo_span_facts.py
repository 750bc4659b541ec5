"""The demo job's outputs carry the span facts of issue 11: effective rank and stability in the spans and
ccs tables, every stage's precision in the tables' metadata, the manifest, the summary and the report."""

from __future__ import annotations

import json

import polars as pl

from ccs_dist.artifacts.schemas import read_metadata
from tests.support.jobs import read_tables


def test_demo_tables_carry_rank_stability_and_precision(local_demo_run):
    root, proc = local_demo_run
    run_dir = root / "reports" / "demo"
    tables = read_tables(run_dir)
    spans, ccs = tables["spans"], tables["ccs"]
    for table in (spans, ccs):
        assert {"requested_rank", "effective_rank", "stability", "span1_stability"} <= set(table.columns)
        assert table["stability"].is_between(0, 1).all() and table["stability"].null_count() == 0
    # ccs-toy: head dimension K = 32, so each head's terms span at most K + 3 directions (bias, ln_post)
    assert (spans["requested_rank"] == 64).all() and spans["effective_rank"].is_between(32, 35).all()
    assert ccs.join(spans.filter(pl.col("rank") == 0), on=["model", "layer", "head"])\
        .select((pl.col("stability") == pl.col("stability_right")).all()).item()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for m in manifest["models"]:
        assert m["stage_precision"]["decompose"] == "fp32" and m["stage_precision"]["textspan"] == "fp64"
    meta = read_metadata(run_dir / "tables" / "evaluation.parquet")
    assert set(meta["stage_precision"]) == set(ccs["model"])
    assert "precision ccs-toy/random-init: decompose fp32" in proc.stdout
    html = (run_dir / "index.html").read_text(encoding="utf-8")
    assert "Precision per stage" in html and 'class="cell c' in html and " stab" in html
