"""DESIGN convention 1 for the attribution modules: they import with ray, HTTP clients and fire blocked."""

from __future__ import annotations

import subprocess
import sys

MODULES = ["ccs_dist.evaluate.attribution", "ccs_dist.attribution", "ccs_dist.attribution.run",
           "ccs_dist.attribution.reliance", "ccs_dist.stages.attribution"]


def test_attribution_modules_import_with_ray_http_and_cli_blocked():
    code = (
        "import sys\n"
        "for name in ('ray', 'openai', 'httpx', 'aiohttp', 'requests', 'fire', 'ccs_dist.cli'):\n"
        "    sys.modules[name] = None\n"
        f"import importlib\nfor m in {MODULES!r}:\n    importlib.import_module(m)\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
