"""Shared fixtures: the tiny random CLIP, real architectures at random init, a throwaway cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny():
    from ccs_dist.models import load_model

    return load_model("ccs-tiny", device="cpu")


@pytest.fixture(scope="session")
def vit_b32():
    from ccs_dist.models import load_model

    return load_model("ViT-B-32", device="cpu")


@pytest.fixture
def cache_dir(tmp_path):
    d = tmp_path / "cache"
    d.mkdir()
    return d


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600):
    """Run ``python -m ccs_dist.cli ARGS`` as a user would; returns the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ccs_dist.cli", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def local_demo_run(tmp_path_factory):
    """The demo spec run once in local mode, shared by the local and Ray tests: (root, CompletedProcess)."""
    from tests.jobs_helpers import run_full_grid

    root = tmp_path_factory.mktemp("demo")
    proc = run_full_grid("--local", "--quiet", "--out", str(root / "reports"), "--cache-dir", str(root / "cache"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root, proc
