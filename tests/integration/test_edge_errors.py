"""Bad arguments at the edges give one line and a non-zero exit before any work is done (issue 14)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.cli import one_line_error, run_cli
from tests.support.paths import REPO


def test_out_and_cache_dir_that_are_files(tmp_path):
    f = tmp_path / "f"
    f.write_text("keep me")
    one_line_error(run_cli("decompose", "--cache-dir", str(f), "--images", "synthetic:4", "--pretrained", "none"),
                   f"--cache-dir {f} is a file")
    one_line_error(run_cli("textspan", "--out", str(f), "--images", "synthetic:4", "--pretrained", "none"), f"--out {f} is a file")
    one_line_error(run_cli("score", "--spans", "x.parquet", "--out", str(f / "sub")), f"which is a file")
    one_line_error(run_cli("score", "--spans", "x.parquet", "--out", str(tmp_path / "o"), "--cache-dir", str(f)), "is a file")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for flag in ("--out", "--cache-dir"):
        p = subprocess.run([sys.executable, "-m", "ccs_dist.jobs.full_grid", "--local", "--quiet", flag, str(f)],
                           capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
        one_line_error(p, "which is a file" if flag == "--out" else "is a file")
        assert "spans" not in p.stderr.lower().replace("finished stages", "")  # stopped before the first stage
    assert f.read_text() == "keep me"


def test_non_integer_and_negative_counts(tmp_path):
    one_line_error(run_cli("textspan", "--rank", "abc", "--out", str(tmp_path / "o")), "--rank must be an integer, got 'abc'")
    one_line_error(run_cli("textspan", "--workers", "-2", "--out", str(tmp_path / "o"), "--images", "synthetic:4"),
                   "--workers must be >= 0, got -2")
    one_line_error(run_cli("decompose", "--workers", "-2", "--images", "synthetic:4", "--cache-dir", str(tmp_path / "c")),
                   "--workers must be >= 0")
