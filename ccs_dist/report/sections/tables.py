"""The "Tables" section: every table of the run with its row count, columns and links to its parquet and CSV."""

from __future__ import annotations

import os
from pathlib import Path

from ccs_dist.report.html import Markup, table, tag
from ccs_dist.report.view import ReportView


def downloads(view: ReportView) -> Markup:
    data, csvs, out_dir = view.data, view.csvs, view.out_dir
    rows = []
    for name, path in data.table_paths.items():
        df = data.tables.get(name)
        links: list[Markup] = [tag("a", "parquet", href=_rel(path, out_dir))]
        if name in csvs:
            links.append(Markup(" · "))
            links.append(tag("a", "csv", href=_rel(csvs[name], out_dir)))
        rows.append([name, df.height if df is not None else "–", ", ".join(df.columns) if df is not None else "", tag("td", *links)])
    return table(["table", "rows", "columns", "files"], rows)


def _rel(path: Path, start: Path) -> str:
    try:
        rel = os.path.relpath(path.resolve(), start.resolve())
    except ValueError:  # other drive on Windows
        return path.resolve().as_uri()
    return "/".join(rel.split(os.sep))
