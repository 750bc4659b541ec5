"""Helpers for the full-grid tests: run the job (``python -m ccs_dist.jobs.full_grid``, its own entry point) as a user would and compare run tables."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl

from tests.support.paths import REPO

TABLES = ("spans", "labels", "judgments", "ccs", "ccs_at_k", "evaluation")


def job_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}
    env.update(extra)
    return env


def run_full_grid(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccs_dist.jobs.full_grid", *args], cwd=REPO, env=env or job_env(),
                          capture_output=True, text=True, timeout=timeout)


# written when the probe set is toy:N (the benchmark's with toy-<factor> tasks too)
TOY_TABLES = ("ground_truth", "toy_heads", "toy_outcomes", "direct_ablation", "benchmark_heads", "benchmark_checks")
ATTRIBUTION_TABLES = ("attribution", "attribution_curves", "attribution_faithfulness", "attribution_reliance")  # attribution.enabled


# what a fresh clone lacks: version control, the virtualenv, build outputs and the git-ignored run folders
_NOT_IN_A_CLONE = {".git", ".venv", "cache", "reports", "build", ".pytest_cache", "test-artifacts"}


def fresh_copy(parent: Path) -> Path:
    """The repository alone, as a fresh clone has it, in ``parent/ccs_dist`` (nothing beside it: no ../shared)."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        return skip | (_NOT_IN_A_CLONE & set(names) if Path(folder) == REPO else set())

    parent.mkdir(parents=True, exist_ok=True)
    dest = parent / "ccs_dist"
    shutil.copytree(REPO, dest, ignore=ignore)
    assert sorted(p.name for p in parent.iterdir()) == ["ccs_dist"]
    return dest


def read_tables(run_dir: Path) -> dict[str, pl.DataFrame]:
    tables = {t: pl.read_parquet(run_dir / "tables" / f"{t}.parquet") for t in TABLES}
    tables.update({t: pl.read_parquet(p) for t in TOY_TABLES + ATTRIBUTION_TABLES
                   if (p := run_dir / "tables" / f"{t}.parquet").is_file()})
    return tables


def assert_same_tables(a: dict[str, pl.DataFrame], b: dict[str, pl.DataFrame]) -> None:
    assert set(a) == set(b), (sorted(a), sorted(b))
    for name in a:
        assert a[name].columns == b[name].columns, name
        assert a[name].equals(b[name]), f"table {name} differs"
