"""The HTML report without a browser: contents, escaping, paper side by side, missing parts, bad input."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import polars as pl
import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.report import write_report
from tests.support.report_fixtures import HOSTILE_LABEL, HOSTILE_TEXT, FixtureModel, FixtureSpec, make_run
from ccs_dist.report.html import esc, json_for_script
from ccs_dist.report.load import default_paper_reference
from tests.support.paths import REPO

PAPER = default_paper_reference()  # shipped with the package


class Dom(HTMLParser):
    """Collects start tags with their attributes, and text per tag id."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append("")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data

    def find(self, tag: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("demo") / "run", FixtureSpec())
    page = write_report(run)
    return run, page, page.read_text(encoding="utf-8")


def test_writes_page_and_csvs(demo):
    run, page, text = demo
    assert page == run / "index.html"
    for parquet in (run / "tables").glob("*.parquet"):
        csv = parquet.with_suffix(".csv")
        assert csv.exists(), csv
        assert pl.read_csv(csv).height == pl.read_parquet(parquet).height
    # the judgments CSV keeps the failed verdict as an empty cell
    j = pl.read_csv(run / "tables" / "judgments.csv")
    assert j["aligned"].null_count() == pl.read_parquet(run / "tables" / "judgments.parquet")["aligned"].null_count() >= 1


def test_page_is_self_contained_and_pins_its_script(demo):
    _, _, text = demo
    dom = Dom(text)
    assert not dom.find("link") and not dom.find("img") and not dom.find("iframe")
    assert all("src" not in a for t, a in dom.tags), "nothing may be loaded from elsewhere"
    assert not re.search(r"https?://", "".join(dom.scripts)), "no URL in the scripts"
    csp = next(a["content"] for t, a in dom.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp
    code = [s for s, (t, a) in zip(dom.scripts, [x for x in dom.tags if x[0] == "script"]) if a.get("type") is None]
    assert len(code) == 1
    digest = base64.b64encode(hashlib.sha256(code[0].encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp, "the CSP must allow exactly the page's own script"


def test_grid_has_one_cell_per_scored_head_and_card_data(demo):
    run, _, text = demo
    ccs = pl.read_parquet(run / "tables" / "ccs.parquet")
    dom = Dom(text)
    cells = [a for t, a in dom.tags if t == "button" and "cell" in (a.get("class") or "").split()]
    assert len(cells) == ccs.height
    want = {f"L{r['layer']}.H{r['head']}" for r in ccs.to_dicts()}
    assert {a["data-h"] for a in cells} == want
    # a cell's colour class is its CCS
    r = ccs.row(0, named=True)
    cell = next(a for a in cells if a["data-h"] == f"L{r['layer']}.H{r['head']}")
    assert f"c{r['ccs']}" in cell["class"].split()
    # the data block carries every head's 5 descriptions with variance and verdicts
    data = json.loads(next(s for s, (t, a) in zip(dom.scripts, [x for x in dom.tags if x[0] == "script"]) if a.get("type") == "application/json"))
    heads = data["models"][0]["heads"]
    assert set(heads) == want
    spans = pl.read_parquet(run / "tables" / "spans.parquet").filter((pl.col("layer") == r["layer"]) & (pl.col("head") == r["head"])).sort("rank")
    card = heads[f"L{r['layer']}.H{r['head']}"]
    assert [d["t"] for d in card["d"]] == spans["text"].to_list()
    assert [d["v"] for d in card["d"]] == pytest.approx(spans["variance"].to_list())
    assert all(len(d["j"]) == len(data["models"][0]["judges"]) for d in card["d"])


def test_charts_and_sections_present(demo):
    _, _, text = demo
    assert text.count('<svg class="chart"') >= 4  # CCS@K across, per model, >= 2 pruning plots
    for sid in ("summary", "ccs-at-k", "model-0", "pruning", "agreement", "attribution", "failures", "tables"):
        assert f'id="{sid}"' in text, sid


def test_pruning_shows_random_mean_and_std(demo):
    run, _, text = demo
    ev = pl.read_parquet(run / "tables" / "evaluation.parquet")
    sel = ev.filter((pl.col("task") == "cifar10") & (pl.col("metric") == "top1"))
    mean = sel.filter(pl.col("condition") == "random:mean")["value"][0]
    std = sel.filter(pl.col("condition") == "random:std")["value"][0]
    high = sel.filter(pl.col("condition") == "high")["value"][0]
    orig = sel.filter(pl.col("condition") == "original")["value"][0]
    assert f"{mean:,.2f} ± {std:,.2f}" in text
    assert f"{high - orig:+.2f}" in text
    assert "t2v_R@10" in text and "maxskew@10_sum" in text  # retrieval R@k and bias metrics


def test_paper_side_by_side_and_random_init_warning(tmp_path):
    paper = json.loads(PAPER.read_text())
    spec = FixtureSpec(models=(FixtureModel("ViT-B-32", "openai"), FixtureModel("ViT-B-32", None)), tasks=("cifar10",))
    run = make_run(tmp_path / "run", spec)
    text = write_report(run).read_text()
    ref = paper["ccs_at_k"]["by_model"]["ViT-B-32/openai"]
    for v in ref:
        assert f"paper {v:.3f}" in text
    orig, high, low = paper["zero_shot_original_high_low"]["cifar10"]["ViT-B-32/openai"]
    assert f"paper {orig:.2f}" in text and f"paper {high:.2f}" in text
    assert 'id="random-init-warning"' in text and "ViT-B-32/random-init" in text
    # the random-init model never gets paper figures: its CCS@K table row has no 'paper' value
    section = text.split('id="model-1"')[1].split("</section>")[0]
    assert 'class="paper"' not in section and "paper-mark" not in section
    assert 'class="paper-mark"' in text.split('id="model-0"')[1].split("</section>")[0]
    across_row = text.split('id="ccs-at-k"')[1].split("ViT-B-32/random-init</a>")[1].split("</tr>")[0]
    assert 'class="paper"' not in across_row
    # without the reference file the report still renders, without paper figures
    text2 = write_report(run, tmp_path / "nopaper", paper_reference=None).read_text()
    assert "random-init-warning" in text2
    with pytest.raises(UserError, match="paper reference"):
        write_report(run, tmp_path / "x", paper_reference=tmp_path / "missing.json")


def test_hostile_text_is_escaped(tmp_path):
    run = make_run(tmp_path / "run", FixtureSpec(hostile=True))
    text = write_report(run).read_text()
    dom = Dom(text)
    assert not dom.find("img"), "a label became an element"
    assert len([t for t, _ in dom.tags if t == "script"]) == 2  # the data block and the page's own script
    assert "<img src=x" not in text and "<script>window.__pwned" not in text and "<b>bad gateway" not in text
    assert "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;" in text  # grid tooltip
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text  # run name, task name
    data_block = text.split('id="ccs-data">')[1].split("</script>")[0]
    assert "<" not in data_block and ">" not in data_block
    heads = json.loads(data_block)["models"][0]["heads"].values()
    assert any(h["label"] == HOSTILE_LABEL for h in heads)  # the exact text survives, for textContent
    assert any(d["t"] == HOSTILE_TEXT for h in heads for d in h["d"])
    # every section that shows labels shows the hostile one, escaped
    escaped_label = "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;"
    attribution = text.split('id="attribution"', 1)[1].split("</section>", 1)[0]
    assert escaped_label in attribution and "<img" not in attribution


def test_escape_helpers():
    assert esc('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    s = json_for_script({"t": "</script><script>alert(1)</script>\u2028", "n": float("nan")})
    assert "<" not in s and "\u2028" not in s
    assert json.loads(s) == {"t": "</script><script>alert(1)</script>\u2028", "n": None}


def test_optional_parts_missing(tmp_path):
    run = make_run(tmp_path / "full", FixtureSpec(agreement=False, attribution=False))
    # spans only, no manifest: a grid of unscored heads
    only = tmp_path / "spans_only"
    (only / "tables").mkdir(parents=True)
    (only / "tables" / "spans.parquet").write_bytes((run / "tables" / "spans.parquet").read_bytes())
    text = write_report(only).read_text()
    assert text.count('class="cell cn"') == 48
    assert 'id="pruning"' not in text and 'id="agreement"' not in text
    # ccs without ccs_at_k: CCS@K derived from the ccs table
    derived = tmp_path / "derived"
    (derived / "tables").mkdir(parents=True)
    for name in ("ccs", "evaluation"):
        (derived / "tables" / f"{name}.parquet").write_bytes((run / "tables" / f"{name}.parquet").read_bytes())
    text = write_report(derived, tmp_path / "out").read_text()
    at_k = pl.read_parquet(run / "tables" / "ccs_at_k.parquet").sort("k")
    for v in at_k["fraction"]:
        assert f">{v:.3f}<" in text
    assert (tmp_path / "out" / "index.html").exists() and not (derived / "index.html").exists()
    # links to the tables are relative to where the page is
    assert 'href="../derived/tables/ccs.csv"' in text


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no tables"):
        write_report(tmp_path / "empty")
    bad = tmp_path / "bad"
    (bad / "tables").mkdir(parents=True)
    pl.DataFrame({"model": ["m"], "layer": [1]}).write_parquet(bad / "tables" / "ccs.parquet")
    with pytest.raises(UserError, match="lacks columns head, ccs") as e:
        write_report(bad)
    assert "\n" not in str(e.value)
    (bad / "tables" / "ccs.parquet").write_bytes(b"not parquet")
    with pytest.raises(UserError, match="cannot be read"):
        write_report(bad)
