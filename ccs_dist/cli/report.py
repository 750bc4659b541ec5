"""``report``: a run's HTML report and its tables as CSV."""

from __future__ import annotations

from ccs_dist.core.errors import UserError
from ccs_dist.stages.report import report_stage


def report(self, run_dir: str = "", out: str | None = None, paper: str | None = None):
    """Write a run's HTML report (one self-contained, offline page) and its tables as CSV; print the page's path.

    Reads RUN_DIR/manifest.json and RUN_DIR/tables/*.parquet; writes OUT/index.html and RUN_DIR/tables/NAME.csv.

    Args:
        run_dir: the run's output directory (reports/<run>, holding tables/*.parquet and manifest.json).
        out: directory for index.html (default: RUN_DIR itself).
        paper: the paper's published figures, shown beside this run's for the same weights
            (default: the copy shipped with ccs_dist).
    """
    if not run_dir:
        raise UserError("report needs RUN_DIR: the output directory of a run, e.g. ccs-dist report reports/demo")
    return str(report_stage(run_dir, out=out, paper=paper))
