"""HTML report of a run: CCS at a glance, every head's evidence, pruning effects, the paper side by side.

``write_report(run_dir)`` reads ``RUN_DIR/manifest.json`` and ``RUN_DIR/tables/*.parquet`` (any part may
be missing except at least one table), writes each table as CSV beside its parquet and one
self-contained, offline ``index.html`` (styles, script, data, SVG charts and image thumbnails inline).
For a full-grid run whose decompositions are still in the cache it first adds each head's top and bottom
images (``head_images``, ``head_thumbnails``; :mod:`ccs_dist.report.head_images`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ccs_dist.artifacts.run_dir import RunDir
from ccs_dist.artifacts.store import atomic_write_bytes
from ccs_dist.core.errors import UserError
from ccs_dist.report.load import load_run, write_csvs
from ccs_dist.report.render import render

log = logging.getLogger(__name__)

__all__ = ["write_report"]


def write_report(run_dir: str | Path, out_dir: str | Path | None = None, paper_reference: str | Path | None = None,
                 head_images: bool = True) -> Path:
    """Write ``index.html`` for the run at ``run_dir`` into ``out_dir`` (default: ``run_dir``); return its path.

    paper_reference: the paper's figures (default: the copy shipped in ``ccs_dist/report/data``).
    head_images: first add the ``head_images`` / ``head_thumbnails`` tables of a full-grid run whose
    decompositions are still in the cache (see :mod:`ccs_dist.report.head_images`); kept when already there.
    Raises :class:`ccs_dist.core.errors.UserError` for a missing directory, no tables or a table with wrong columns.
    """
    image_notes = _head_images(Path(run_dir)) if head_images else []
    data = load_run(run_dir, paper_reference)
    data.notes.extend(image_notes)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    csvs = write_csvs(data)
    page = render(data, csvs, out)
    path = RunDir(run_dir).report(out)
    atomic_write_bytes(path, page.encode("utf-8"))
    path.chmod(0o644)  # a page to share (the temporary file behind the atomic write is private)
    log.info("report written to %s (%.1f kB)", path, len(page) / 1024)
    return path


def _head_images(run_dir: Path) -> list[str]:
    from ccs_dist.report.head_images import add_head_images  # lazy: it imports torch

    if not run_dir.is_dir():
        return []  # load_run says what is wrong
    try:
        return add_head_images(run_dir)
    except (UserError, OSError, ValueError, RuntimeError) as e:  # the report is still worth having without images
        log.warning("head images not computed: %s", e)
        return [f"head images could not be computed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"]
