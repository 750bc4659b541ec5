"""A non-editable install carries everything the product reads at run time, and finds it from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from tests.support.jobs import fresh_copy

SHIPPED = ("ccs_dist/job_specs/demo.yaml", "ccs_dist/job_specs/paper_grid.yaml", "ccs_dist/job_specs/local_gpu.yaml", "ccs_dist/job_specs/beyond_grid.yaml",  # jobs/
           "ccs_dist/data/files/occupations_104.txt", "ccs_dist/report/data/paper_reference.json",
           "ccs_dist/text/data/default_pool.txt", "ccs_dist/models/configs/ccs-tiny.json", "ccs_dist/report/assets/report.js")

CHECK = """
import json, pathlib, sys
import ccs_dist
from ccs_dist.evaluate.bias import read_occupations
from ccs_dist.jobs.spec import load_spec
from ccs_dist.report.load import default_paper_reference
site = pathlib.Path(sys.argv[1]).resolve()
assert pathlib.Path(ccs_dist.__file__).resolve().is_relative_to(site), ccs_dist.__file__
spec = load_spec()  # the demo, by default
assert spec.run == "demo" and pathlib.Path(spec.cache_dir) == pathlib.Path.cwd() / "cache"
assert len(read_occupations(None)) == 104
assert "ccs_at_k" in json.loads(default_paper_reference().read_text())
print("ok", len(load_spec("paper_grid").models))
"""


def test_wheel_ships_the_data_and_runs_from_elsewhere(tmp_path):
    clone = fresh_copy(tmp_path / "alone")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "wheels"), str(clone)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("ccs_dist-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [f for f in SHIPPED if f not in names]
    assert not [f for f in names if f.startswith(("tests/", "jobs/"))]  # test support stays out; the specs ship once
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # what pip install --target does for a pure-python wheel
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "DATA_ROOT": "/data"}
    proc = subprocess.run([sys.executable, "-c", CHECK, str(site)], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok 6", proc.stderr[-3000:]
