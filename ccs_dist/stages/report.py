"""Report stage: a run's HTML report (one self-contained offline page) and its tables as CSV."""

from __future__ import annotations

from pathlib import Path


def report_stage(run_dir: str | Path, *, out: str | Path | None = None, paper: str | Path | None = None) -> Path:
    from ccs_dist.report import write_report

    return write_report(run_dir, out_dir=out, paper_reference=paper)
