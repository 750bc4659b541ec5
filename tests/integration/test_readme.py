"""The README and docs/ are a contract: every ```python block runs as written, offline, in a fresh directory.

Their commands are checked in ``test_docs.py`` (each ``ccs-dist`` / ``full_grid`` command's flags against its
``--help``, every path, the layout tree against the layers).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCKS = [
    (page.relative_to(REPO).as_posix(), i, block)
    for page in PAGES
    for i, block in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), flags=re.M | re.S))
]


def test_the_readme_has_python_blocks():
    assert any(page == "README.md" for page, _, _ in BLOCKS)


@pytest.mark.parametrize("page,index,block", BLOCKS, ids=[f"{p}#{i}" for p, i, _ in BLOCKS])
def test_python_block_runs_in_a_fresh_directory(page, index, block, tmp_path):
    script = tmp_path / f"block_{index}.py"
    script.write_text(block, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "https_proxy")}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO),  # and any download goes to a closed port and fails:
               HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{page} python block {index} failed:\n{block}\n{proc.stderr[-3000:]}"
