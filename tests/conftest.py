"""Shared fixtures: the tiny random CLIP, real architectures at random init, a throwaway cache, the demo run,
the loopback API key, a headless browser. Helpers the fixtures and tests call live in :mod:`tests.support`."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


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


@pytest.fixture(scope="session")
def local_demo_run(tmp_path_factory):
    """The demo spec run once in local mode, shared by the local and Ray tests: (root, CompletedProcess)."""
    from tests.support.jobs import run_full_grid

    root = tmp_path_factory.mktemp("demo")
    proc = run_full_grid("--local", "--quiet", "--out", str(root / "reports"), "--cache-dir", str(root / "cache"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root, proc


@pytest.fixture
def key_env(monkeypatch):
    """The loopback server's key in an environment variable; returns the variable's name."""
    from tests.support.llm_spans import KEY

    monkeypatch.setenv("CCS_TEST_KEY", KEY)
    return "CCS_TEST_KEY"


@pytest.fixture(scope="module")
def browser():
    """A headless chromium (network off), one per test module; skipped without one unless CCS_REQUIRE_BROWSER=1."""
    pytest.importorskip("websocket", reason="websocket-client (the test extra) drives chromium")
    from tests.support.browser import Chromium, find_chromium

    if find_chromium() is None:
        if os.environ.get("CCS_REQUIRE_BROWSER") == "1":
            pytest.fail("CCS_REQUIRE_BROWSER=1 but no chromium binary (apt-get install chromium)")
        pytest.skip("no chromium binary (apt-get install chromium)")
    b = Chromium(timeout=60)
    try:
        yield b
    finally:
        b.close()
