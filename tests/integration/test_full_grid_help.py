"""``python -m ccs_dist.jobs.full_grid --help`` describes the demo as it is: the trained toy model (ccs-toy)
beside its random-init contrast, not "random-init models"."""

from __future__ import annotations

import subprocess
import sys

from tests.support.paths import REPO


def test_full_grid_help_names_the_trained_toy_model():
    out = subprocess.run([sys.executable, "-m", "ccs_dist.jobs.full_grid", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # argparse wraps lines
    assert "random-init models" not in text
    assert "ccs-toy" in text and "trained" in text
    assert "ccs_dist/jobs/specs" not in text  # the shipped specs are the top-level jobs/
