"""DESIGN convention 1: compute code never imports ray, HTTP clients or the CLI."""

from __future__ import annotations

import subprocess
import sys

COMPUTE_MODULES = [
    "ccs_dist", "ccs_dist.models", "ccs_dist.models.masked", "ccs_dist.decompose", "ccs_dist.textspan",
    "ccs_dist.text.embed", "ccs_dist.text.index", "ccs_dist.images", "ccs_dist.spans", "ccs_dist.stages.chain",
]


def test_compute_modules_import_with_ray_and_http_blocked():
    code = (
        "import sys\n"
        "for name in ('ray', 'openai', 'httpx', 'aiohttp', 'requests', 'fire'):\n"
        "    sys.modules[name] = None\n"
        f"import importlib\nfor m in {COMPUTE_MODULES!r}:\n    importlib.import_module(m)\n"
        "import ccs_dist\nccs_dist.load_model, ccs_dist.decompose, ccs_dist.textspan, ccs_dist.encode_image_pruned\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
