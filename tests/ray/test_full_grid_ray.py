"""The full grid on a real Ray head started on 127.0.0.1 by the test: ray job submit, and a worker killed mid-stage."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.jobs import assert_same_tables, fresh_copy, job_env, read_tables, run_full_grid

VENV_BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head`` on 127.0.0.1 with its own temp dir and ports; stopped afterwards."""
    if shutil.which("ray", path=str(VENV_BIN)) is None:
        pytest.skip("ray CLI not installed")
    temp = tempfile.mkdtemp(prefix="ccsray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    gcs, dashboard = _free_port(), _free_port()
    # Ray >= 2.59 authenticates local clusters by token: use a fresh one, passed only through the environment.
    env = job_env(PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", RAY_USAGE_STATS_ENABLED="0",
                  RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(24))
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", "--include-dashboard=true",
           f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
           f"--dashboard-agent-grpc-port={_free_port()}", f"--metrics-export-port={_free_port()}",
           f"--runtime-env-agent-port={_free_port()}", "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    try:
        yield {"gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}", "env": env}
    finally:
        subprocess.run([str(VENV_BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_from_a_fresh_copy_gives_the_local_tables(ray_head, local_demo_run, tmp_path):
    """The README's headline command, from the repository alone (no ../shared): the uploaded working directory
    is all the job has, so every default must come from the package."""
    local_root, _ = local_demo_run
    clone = fresh_copy(tmp_path / "alone")
    out, cache = tmp_path / "reports", tmp_path / "cache"
    runtime_env = {"env_vars": {"HF_HUB_OFFLINE": "1"}}
    cmd = [str(VENV_BIN / "ray"), "job", "submit", "--address", ray_head["dashboard"], "--working-dir", ".",
           "--runtime-env-json", json.dumps(runtime_env), "--",
           "python", "-m", "ccs_dist.jobs.full_grid", "--spec", "demo", "--quiet",
           "--out", str(out), "--cache-dir", str(cache)]
    proc = subprocess.run(cmd, cwd=clone, env=ray_head["env"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "succeeded" in proc.stdout and "(ray mode)" in proc.stdout
    assert_same_tables(read_tables(local_root / "reports" / "demo"), read_tables(out / "demo"))
    manifest = json.loads((out / "demo" / "manifest.json").read_text())
    assert manifest["mode"] == "ray"
    assert sorted(p.name for p in clone.parent.iterdir()) == ["ccs_dist"]  # nothing was written beside the copy


def test_worker_killed_mid_stage_still_gives_identical_tables(ray_head, local_demo_run, tmp_path):
    local_root, _ = local_demo_run
    marker = tmp_path / "killed-once"
    env = {**ray_head["env"], "CCS_DIST_FAULT": f"spans:{marker}"}
    t0 = time.monotonic()
    proc = run_full_grid("--address", ray_head["gcs"], "--quiet", "--out", str(tmp_path / "reports"),
                         "--cache-dir", str(tmp_path / "cache"), env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert marker.is_file(), "the fault was never injected"
    assert "\x1b[" not in proc.stderr and "\r" not in proc.stderr  # a redirected log: no colour codes, no bars
    beats = [ln for ln in proc.stderr.splitlines() if "progress: " in ln]
    assert beats and all("; running: " in ln and "; queued: " in ln for ln in beats), beats
    assert_same_tables(read_tables(local_root / "reports" / "demo"), read_tables(tmp_path / "reports" / "demo"))
    assert time.monotonic() - t0 < 900
