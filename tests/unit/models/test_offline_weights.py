"""Published weights without network fail in seconds with one line saying what to do (not after ~55 s of
huggingface_hub retries): with HF_HUB_OFFLINE=1, and with an unreachable hub endpoint (a closed local port).
Before, the closed port took 58 s (two candidate files x five retries) and the offline case did not name
HF_HUB_OFFLINE."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.paths import REPO

_LOAD = """
import json, time
import open_clip  # imported before the clock starts: only the loading is timed
from ccs_dist.core.errors import UserError
from ccs_dist.models.loading import load_model
t = time.monotonic()
try:
    load_model("ViT-B-32", "openai", device="cpu")
    out = {"error": None}
except UserError as e:
    out = {"error": str(e)}
out["seconds"] = time.monotonic() - t
print(json.dumps(out))
"""


@pytest.mark.parametrize("env, expected", [
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
    ({"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}, "cannot reach 127.0.0.1:9"),
], ids=["offline", "unreachable"])
def test_published_weights_without_network_fail_fast(tmp_path, env, expected):
    full = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and "PROXY" not in k.upper()}
    full.update(env, PYTHONPATH=str(REPO), HF_HOME=str(tmp_path / "hf"))  # an empty hub cache
    p = subprocess.run([sys.executable, "-c", _LOAD], cwd=REPO, env=full, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["error"] is not None and "\n" not in out["error"]
    assert expected in out["error"] and "ViT-B-32 / openai" in out["error"]
    assert "--pretrained PATH" in out["error"]  # what to do: a local checkpoint, or the network
    assert out["seconds"] < 8, out
