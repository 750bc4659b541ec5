"""Helpers for the full-grid tests: run the job as a user would and compare run tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl

from tests.conftest import REPO

TABLES = ("spans", "labels", "judgments", "ccs", "ccs_at_k", "evaluation")


def job_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    env.update(extra)
    return env


def run_full_grid(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccs_dist.jobs.full_grid", *args], cwd=REPO, env=env or job_env(),
                          capture_output=True, text=True, timeout=timeout)


def read_tables(run_dir: Path) -> dict[str, pl.DataFrame]:
    return {t: pl.read_parquet(run_dir / "tables" / f"{t}.parquet") for t in TABLES}


def assert_same_tables(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    for name in TABLES:
        assert a[name].columns == b[name].columns, name
        assert a[name].equals(b[name]), f"table {name} differs"
