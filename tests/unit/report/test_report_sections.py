"""The report's structure: the page's sections are the registry's, in its order; the run layout is RunDir's."""

from __future__ import annotations

import re

import pytest

from ccs_dist.artifacts.run_dir import RunDir
from ccs_dist.core.errors import UserError
from ccs_dist.core.heads import head_name, parse_head_name
from ccs_dist.report import write_report
from ccs_dist.report.load import load_run
from ccs_dist.report.sections import SECTIONS, build_sections
from ccs_dist.report.view import build_view
from tests.support.report_fixtures import FixtureModel, FixtureSpec, make_run


def test_the_page_shows_the_registry_sections_in_order(tmp_path):
    spec = FixtureSpec(models=(FixtureModel("ViT-B-32", "openai"), FixtureModel("ViT-B-32", None)), tasks=("cifar10",),
                       head_images=False)
    run = make_run(tmp_path / "run", spec)
    text = write_report(run).read_text(encoding="utf-8")
    on_page = re.findall(r'<section id="([^"]+)"', text)
    view = build_view(load_run(run), {}, run)
    parts = build_sections(view)
    assert on_page == [p.id for p in parts]
    assert on_page == ["summary", "ccs-at-k", "model-0", "model-1", "pruning", "ccs-effect", "agreement", "attribution",
                       "failures", "tables"]
    shown = list(dict.fromkeys("model" if p.per_model else p.id for p in parts))
    # the toy-world sections need toy tables, the scores section the head-card tables
    assert shown == [s.id for s in SECTIONS if s.id not in ("ground-truth", "benchmark", "scores")]
    nav = text.split('<nav>', 1)[1].split('</nav>', 1)[0]
    assert re.findall(r'href="#([^"]+)"', nav) == [p.id for p in parts if not p.per_model]
    assert [p.title for p in parts if p.per_model] == [m.key for m in view.models]


def test_run_dir_layout(tmp_path):
    run = RunDir(tmp_path)
    assert run.manifest == tmp_path / "manifest.json"
    assert run.table("ccs") == tmp_path / "tables" / "ccs.parquet"
    assert run.report() == tmp_path / "index.html" and run.report(tmp_path / "site") == tmp_path / "site" / "index.html"
    assert run.stage_dir("m", "spans") == tmp_path / "stages" / "m" / "spans" and RunDir.stage_rel("m", "spans") == "stages/m/spans"
    assert run.rel(run.table("ccs")) == "tables/ccs.parquet"
    run.tables_dir.mkdir()
    for p in (run.table("ccs"), tmp_path / "ccs.parquet", tmp_path / "loose.parquet"):
        p.write_bytes(b"")
    assert run.list_tables() == {"ccs": run.table("ccs"), "loose": tmp_path / "loose.parquet"}


def test_head_names_round_trip():
    assert parse_head_name(head_name(11, 5)) == (11, 5)
    with pytest.raises(UserError, match="bad head name"):
        parse_head_name("11.5")
