"""Report size and load time for a 6-model run in headless chromium (targets: < 5 MB, < 2 s to load,
thumbnails <= 12 KB per head).

A synthetic run in the real table formats (``tests.support.report_fixtures``): the paper's six models (48 or 64
scored heads each, 5 descriptions, 3 judges), 10 tasks (7 zero-shot, 3 video retrieval) plus 2 bias tasks,
3 random seeds, agreement and attribution tables, and each head's top and bottom 5 images (real 48 px WebP
thumbnails of synthetic images drawn from 100,000, so heads almost never share one: the worst case for size).
Prints the time to write the report, the page size and the thumbnails' share of it, the load time
(navigation to load event, network off; the first load in a fresh browser and the median of the reloads),
the time to open a head card (with its 10 images decoded) and to filter a grid; the last line is JSON.

    python bench/report.py [--repeats 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

from ccs_dist.report import write_report
from tests.support.browser import Chromium
from tests.support.report_fixtures import BIAS, TEN_TASKS, FixtureSpec, make_run, paper_models

SIZE_TARGET_MB = 5.0
LOAD_TARGET_S = 2.0
THUMBS_PER_HEAD_TARGET_KB = 12.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5, help="page loads after the first (median reported)")
    ap.add_argument("--keep", default=None, help="write the run here instead of a temporary directory")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="ccs-report-bench-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp) / "run"
        spec = FixtureSpec(models=paper_models(6), tasks=TEN_TASKS + BIAS, judges=("gpt-4o-mini@api.openai.com",
                           "llama-3.1-8b-instruct@127.0.0.1:8000", "qwen2.5-7b-instruct@127.0.0.1:8001"), failed_heads=2,
                           probe_images=100_000)  # heads (almost) never share an image: the page-size worst case
        run = make_run(root, spec)
        t0 = time.perf_counter()
        page = write_report(run)
        t_write = time.perf_counter() - t0
        size = page.stat().st_size
        n_heads = sum(m.scored_layers * m.n_heads for m in spec.models)
        thumbs = pl.read_parquet(run / "tables" / "head_thumbnails.parquet")
        thumb_bytes = int(thumbs["data_uri"].str.len_bytes().sum())
        n_images = pl.read_parquet(run / "tables" / "head_images.parquet").height

        with Chromium(timeout=120) as b:
            first = b.open(page, offline=True)
            nav_first = b.eval("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000
            loads, navs = [], []
            for _ in range(args.repeats):
                loads.append(b.open(page, offline=True))
                navs.append(b.eval("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
            ready = b.eval("document.documentElement.getAttribute('data-ready')") == "1"
            cells = b.eval("document.querySelectorAll('.ccsgrid .cell[data-h]').length")
            card_ms = b.eval("(async function(){var c=document.querySelectorAll('.cell[data-h]'); var t=performance.now();"
                             "c[c.length-1].click(); var n=document.querySelectorAll('#head-card tr.desc').length;"
                             "var imgs=Array.from(document.querySelectorAll('#head-card img'));"
                             "await Promise.all(imgs.map(function(i){return i.decode();}));"
                             "var d=performance.now()-t; var ok=imgs.filter(function(i){return i.naturalWidth>0;}).length;"
                             "document.getElementById('head-card').close(); return [d, n, ok];})()")
            search_ms = b.eval("(function(){var t=performance.now(); document.querySelectorAll('input.head-search').forEach("
                               "function(i){i.value='animal'; i.dispatchEvent(new Event('input'));}); return performance.now()-t;})()")
            problems = b.problems()
            requests = [u for u in b.requests() if not u.startswith("data:")]  # thumbnails are inline, not fetched

    load = statistics.median(loads)
    per_head_kb = thumb_bytes / n_heads / 1e3
    ok = (size / 1e6 < SIZE_TARGET_MB and max(first, load) < LOAD_TARGET_S and ready and cells == n_heads and not problems
          and per_head_kb <= THUMBS_PER_HEAD_TARGET_KB and card_ms[2] == 10)
    print(f"run: {len(spec.models)} models, {n_heads} scored heads, {len(spec.tasks)} tasks, {len(spec.judges)} judges")
    print(f"write_report: {t_write:.2f} s; index.html {size / 1e6:.2f} MB (target < {SIZE_TARGET_MB} MB)")
    print(f"thumbnails: {thumbs.height} images for {n_images} head-image slots, {thumb_bytes / 1e6:.2f} MB "
          f"({thumb_bytes / size * 100:.0f} % of the page), {per_head_kb:.1f} KB per head (target <= {THUMBS_PER_HEAD_TARGET_KB} KB)")
    print(f"load (navigate -> load event, network off): first {first:.3f} s, median of {len(loads)} reloads {load:.3f} s "
          f"(target < {LOAD_TARGET_S} s); navigation timing loadEventEnd {nav_first:.3f} s / {statistics.median(navs):.3f} s")
    print(f"grid cells {cells} (expected {n_heads}); head card opens in {card_ms[0]:.1f} ms with {card_ms[1]} descriptions "
          f"and {card_ms[2]} of 10 images decoded; "
          f"filtering all {len(spec.models)} grids takes {search_ms:.1f} ms")
    print(f"script errors / CSP violations: {len(problems)}; requests beyond the page itself: {len(requests) - 1}")
    print(json.dumps({"bench": "report", "models": len(spec.models), "heads": n_heads, "tasks": len(spec.tasks),
                      "write_s": round(t_write, 3), "size_mb": round(size / 1e6, 3), "size_target_mb": SIZE_TARGET_MB,
                      "load_first_s": round(first, 3), "load_median_s": round(load, 3), "load_target_s": LOAD_TARGET_S,
                      "nav_load_event_s": round(statistics.median(navs), 3), "card_open_ms": round(card_ms[0], 2),
                      "search_ms": round(search_ms, 2), "cells": cells, "problems": len(problems),
                      "thumbnails": thumbs.height, "thumbs_mb": round(thumb_bytes / 1e6, 3), "thumbs_kb_per_head": round(per_head_kb, 2),
                      "thumbs_kb_per_head_target": THUMBS_PER_HEAD_TARGET_KB, "card_images": card_ms[2],
                      "extra_requests": len(requests) - 1, "ok": ok}))


if __name__ == "__main__":
    main()
