"""The report in a real browser: headless Debian chromium, started by the test, network off.

Skipped when no chromium is installed, unless CCS_REQUIRE_BROWSER=1 (CI sets it): then it fails.
Screenshots go to test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import json

import polars as pl

from ccs_dist.report import write_report
from tests.support.browser import query_all as _q
from tests.support.paths import REPO
from tests.support.report_fixtures import HOSTILE_LABEL, HOSTILE_TEXT, FixtureModel, FixtureSpec, make_run

# images that are not the report's own thumbnails (data:image/... URIs): any would be injected markup
INJECTED_IMAGES = "Array.from(document.images).filter(i => i.src.indexOf('data:image/') !== 0).length"
ARTIFACTS = REPO / "test-artifacts"


def test_demo_report_renders_with_cards_and_charts(browser, tmp_path):
    run = make_run(tmp_path / "demo", FixtureSpec())
    page = write_report(run)
    seconds = browser.open(page, offline=True)
    assert seconds < 20
    assert browser.eval("document.documentElement.getAttribute('data-ready')") == "1", "the page's script did not run"
    ccs = pl.read_parquet(run / "tables" / "ccs.parquet")
    assert _q(browser, ".ccsgrid .cell[data-h]") == ccs.height
    assert _q(browser, "svg.chart") >= 4
    assert _q(browser, "svg.chart rect.bar") >= 12  # CCS@K bars across models and per model

    # a real mouse click on a high-CCS head opens its card with 5 descriptions and the judge's verdicts
    r = ccs.filter(~pl.col("flagged")).sort("ccs", descending=True).row(0, named=True)
    hk = f"L{r['layer']}.H{r['head']}"
    assert browser.eval("document.getElementById('head-card').open") is False
    browser.click(f'.cell[data-h="{hk}"]')
    assert browser.eval("document.getElementById('head-card').open") is True
    assert browser.eval("document.getElementById('head-card').getAttribute('data-head')") == hk
    assert _q(browser, "#head-card tr.desc") == 5
    spans = pl.read_parquet(run / "tables" / "spans.parquet").filter(
        (pl.col("layer") == r["layer"]) & (pl.col("head") == r["head"])).sort("rank")
    shown = browser.eval("Array.from(document.querySelectorAll('#head-card td.desc-text')).map(e => e.textContent)")
    assert shown == spans["text"].to_list()
    assert browser.eval("document.querySelector('#head-card .card-label').textContent") == r["label"]
    assert _q(browser, "#head-card .v-yes") == r["ccs"]  # one judge: its aligned verdicts are the CCS
    ARTIFACTS.mkdir(exist_ok=True)
    browser.screenshot(ARTIFACTS / "report_head_card.png")
    browser.eval("document.getElementById('head-card').close()")

    # search dims the heads whose label does not match
    browser.eval("var i=document.querySelector('input.head-search'); i.value='food'; i.dispatchEvent(new Event('input'))")
    n_food = ccs.filter(pl.col("label").str.to_lowercase().str.contains("food")).height
    assert _q(browser, ".cell[data-h]:not(.dim)") >= n_food > 0

    browser.screenshot(ARTIFACTS / "report_full.png", full_page=True)
    assert browser.problems() == []
    loaded = [u for u in browser.requests() if not u.startswith("data:")]  # thumbnails are inline data: URIs, not fetches
    assert loaded == [page.resolve().as_uri()], "the page must load nothing but itself"


def test_hostile_labels_run_nothing(browser, tmp_path):
    run = make_run(tmp_path / "hostile", FixtureSpec(hostile=True))
    page = write_report(run)
    browser.open(page, offline=True)
    assert browser.eval("document.documentElement.getAttribute('data-ready')") == "1"
    checks = f"[document.title, typeof window.__pwned, {INJECTED_IMAGES}, document.scripts.length]"
    title, pwned, n_img, n_scripts = browser.eval(checks)
    assert title == f"CCS report · demo {HOSTILE_TEXT}"
    assert (pwned, n_img, n_scripts) == ("undefined", 0, 2)
    assert browser.eval("document.getElementById('run-name').textContent") == f"demo {HOSTILE_TEXT}"
    hostile_cell = browser.eval(
        f"Array.from(document.querySelectorAll('.cell[data-h]')).filter(c => c.title.indexOf({json.dumps(HOSTILE_LABEL)}) >= 0).length")
    assert hostile_cell == 1
    hk = browser.eval(f"Array.from(document.querySelectorAll('.cell[data-h]')).find(c => c.title.indexOf({json.dumps(HOSTILE_LABEL)}) >= 0).getAttribute('data-h')")
    browser.click(f'.cell[data-h="{hk}"]')
    assert browser.eval("document.querySelector('#head-card .card-label').textContent") == HOSTILE_LABEL
    assert browser.eval("document.querySelector('#head-card td.desc-text').textContent") == HOSTILE_TEXT
    assert browser.eval(checks) == [title, "undefined", 0, 2]
    # its card's thumbnails are data: images only; the hostile image id is a caption, its non-image "thumbnail" dropped
    captions = browser.eval("Array.from(document.querySelectorAll('#head-card .headimg figcaption')).map(e => e.textContent)")
    assert f"probe/{HOSTILE_TEXT}.png" in captions
    assert _q(browser, "#head-card img") == len(captions) - 1 and _q(browser, "#head-card .noimg") == 1
    # the judge's hostile error message is shown as text in the failures table
    assert browser.eval("document.getElementById('failures').textContent").count("<script>window.__pwned=2</script>") >= 1
    browser.screenshot(ARTIFACTS / "report_hostile.png")
    assert browser.problems() == []


def test_the_check_detects_a_script_that_runs(browser, tmp_path):
    """Control: the same checks catch injected markup in a page that does not escape it."""
    page = tmp_path / "unsafe.html"
    page.write_text(f"<!DOCTYPE html><title>t</title><body><p>{HOSTILE_LABEL}</p><p>{HOSTILE_TEXT}</p></body>", encoding="utf-8")
    browser.open(page, offline=True)
    browser.drain(0.5)
    assert browser.eval("typeof window.__pwned") == "number"
    assert browser.eval(INJECTED_IMAGES) == 1


def test_head_card_shows_its_top_and_bottom_images(browser, tmp_path):
    run = make_run(tmp_path / "imgs", FixtureSpec())
    page = write_report(run)
    browser.open(page, offline=True)
    images = pl.read_parquet(run / "tables" / "head_images.parquet")
    r = images.row(len(images) // 2, named=True)
    hk = f"L{r['layer']}.H{r['head']}"
    browser.click(f'.cell[data-h="{hk}"]')
    assert browser.eval("document.getElementById('head-card').getAttribute('data-head')") == hk
    want = images.filter((pl.col("model") == r["model"]) & (pl.col("layer") == r["layer"]) & (pl.col("head") == r["head"]))
    for side, sign in (("top", 1), ("bot", -1)):
        ids = want.filter(pl.col("sign") == sign).sort("rank")["image_id"].to_list()
        shown = browser.eval(f"Array.from(document.querySelectorAll('#head-card .imgrow.{side} figcaption')).map(e => e.textContent)")
        assert shown == ids
    # every thumbnail decoded into a real 48 px picture (naturalWidth is 0 for a broken image)
    sizes = browser.eval("Array.from(document.querySelectorAll('#head-card img')).map(i => [i.complete, i.naturalWidth])")
    assert len(sizes) == 10 and all(ok and w == 48 for ok, w in sizes)
    browser.screenshot(ARTIFACTS / "report_head_images.png")
    assert browser.problems() == []


def test_ccs_vs_effect_has_one_point_per_scored_head(browser, tmp_path):
    from ccs_dist.attribution.run import ATTRIBUTION_SCHEMA
    from ccs_dist.artifacts.schemas import write_table

    spec = FixtureSpec(models=(FixtureModel("ViT-B-32", "openai"), FixtureModel("ViT-B-16", "openai")))
    run = make_run(tmp_path / "effects", spec)
    # the attribution table as `ccs-dist attribute` writes it (dataset rows with class null, four methods), one model only
    m = spec.models[0]
    rows = [{"model": m.key, "dataset": "cifar10", "class": cls, "layer": layer, "head": h, "method": meth,
             "value": 0.01 * (layer - h) + (0.5 if cls else 0.0), "n_images": 100 if meth != "exact" else 32}
            for layer in range(m.n_layers) for h in range(m.n_heads) for meth in ("attribution", "direct", "energy", "exact")
            for cls in (None, "cat")]
    write_table(pl.DataFrame(rows, schema=ATTRIBUTION_SCHEMA), run / "tables" / "attribution.parquet")
    browser.open(write_report(run), offline=True)
    ccs = pl.read_parquet(run / "tables" / "ccs.parquet").filter(pl.col("model") == m.key)
    figs = browser.eval("Array.from(document.querySelectorAll('#ccs-effect figure.effect')).map(f => "
                        "[f.getAttribute('data-model'), f.querySelectorAll('svg .pt').length])")
    assert figs == [[m.key, ccs.height]]
    # the exact effect of the dataset rows (class null) is what is drawn: a point's tooltip carries it
    tip = browser.eval("document.querySelector('#ccs-effect svg .pt title').textContent")
    hk = tip.split(" ")[0]
    layer, head = (int(x) for x in hk[1:].split(".H"))
    assert f"effect {0.01 * (layer - head):+.4g}" in tip
    assert "exact" in browser.eval("document.querySelector('#ccs-effect figcaption').textContent")
    assert spec.models[1].key in browser.eval("document.getElementById('ccs-effect').textContent")  # its missing rows said
    browser.click("#ccs-effect svg .pt")  # a point opens its head's card
    assert browser.eval("document.getElementById('head-card').open") is True
    browser.eval("document.getElementById('head-card').close()")
    # without an attribution table the section says so plainly
    (run / "tables" / "attribution.parquet").unlink()
    browser.open(write_report(run), offline=True)
    assert _q(browser, "#ccs-effect svg .pt") == 0
    assert "No attribution table" in browser.eval("document.getElementById('no-attribution').textContent")
    assert browser.problems() == []


def test_a_pooling_unit_is_named_as_one_in_the_grid_and_its_card(browser, tmp_path):
    """SigLIP's pooling units (``unit`` column) in a real browser: the grid's row says pool, the card a badge.
    Null: a trunk head's card carries no such badge."""
    run = make_run(tmp_path / "pool", FixtureSpec())
    ccs = pl.read_parquet(run / "tables" / "ccs.parquet")
    model, layer = ccs["model"][0], int(ccs["layer"].max())
    for name in ("spans", "ccs"):  # the last layer's heads become a pooling block: heads, then its MLP
        path = run / "tables" / f"{name}.parquet"
        df = pl.read_parquet(path)
        last_head = int(df.filter(pl.col("layer") == layer)["head"].max())
        unit = (pl.when((pl.col("model") == model) & (pl.col("layer") == layer))
                .then(pl.when(pl.col("head") == last_head).then(pl.lit("pool_mlp")).otherwise(pl.lit("pool_head")))
                .otherwise(pl.lit("head")))
        df.with_columns(unit=unit).write_parquet(path)
    browser.open(write_report(run), offline=True)
    labels = browser.eval("Array.from(document.querySelectorAll('.ccsgrid')[0].querySelectorAll('.rowlab')).map(e => e.textContent)")
    assert labels[-1] == "pool" and all(x.startswith("L") for x in labels[:-1])
    badge = "Array.from(document.querySelectorAll('#head-card .card-title .badge')).map(e => e.textContent)"
    browser.click(f'.ccsgrid .cell[data-m="0"][data-h="L{layer}.H{last_head}"]')
    assert browser.eval(badge) == ["pooling MLP"]
    browser.eval("document.getElementById('head-card').close()")
    browser.click(f'.ccsgrid .cell[data-m="0"][data-h="L{layer - 1}.H0"]')
    assert browser.eval(badge) == []
    assert browser.problems() == []
