"""Report stage: a run's HTML report (one self-contained offline page) and its tables as CSV.

The one door to the report: ``ccs-dist report`` (:mod:`ccs_dist.cli.report`) and the job driver
(:mod:`ccs_dist.jobs.pipeline`) both call :func:`report_stage`.
"""

from __future__ import annotations

from pathlib import Path

from ccs_dist.report import write_report


def report_stage(run_dir: str | Path, *, out: str | Path | None = None, paper: str | Path | None = None) -> Path:
    return write_report(run_dir, out_dir=out, paper_reference=paper)
