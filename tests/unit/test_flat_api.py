"""The documented flat API (``ccs_dist.spans.textspan(...)`` and friends) keeps its names whatever was imported first."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import types

import numpy as np
import torch

import ccs_dist
from ccs_dist.artifacts.store import ArtifactStore
from tests.support.paths import REPO

FUNCTIONS = ("load_model", "decompose", "decompose_image_set", "textspan", "textspan_heads",
             "encode_image_pruned", "encode_image_head_sets", "encode_image_masked")


def _import_every_submodule() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(ccs_dist.__path__, "ccs_dist.")]
    for name in names:
        importlib.import_module(name)
    return names


def _call_each(tmp_path, round_: int) -> None:
    loaded = ccs_dist.load_model("ccs-tiny", device="cpu")
    size = loaded.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images_BCHW = torch.randn(3, 3, size, size)
    d = ccs_dist.decompose(loaded, images_BCHW, layers=1)
    assert (d.heads.sum((1, 2)) + d.rest - d.embedding).abs().max() < 1e-4

    from ccs_dist.data.images import resolve_image_set

    art = ccs_dist.decompose_image_set(loaded, resolve_image_set("synthetic:4", tmp_path), ArtifactStore(tmp_path / f"c{round_}"),
                                       ccs_dist.DecomposeConfig(layers=1, batch_size=4, workers=0, progress=False))
    assert art.n_images == 4

    texts = [f"text {i}" for i in range(8)]
    rng = np.random.default_rng(0)
    text_emb_TE = rng.standard_normal((8, d.heads.shape[-1])).astype(np.float32)
    span = ccs_dist.textspan(d.heads[:, 0, 0].numpy(), text_emb_TE, texts, m=2, rank=2)
    assert isinstance(span, ccs_dist.SpanResult) and len(span.texts) == 2

    from ccs_dist.decomposition.moments import HeadMoments

    moments = HeadMoments.from_data(d.heads[:, 0, :2].permute(1, 0, 2))
    assert len(ccs_dist.textspan_heads(moments, text_emb_TE, texts, m=2, rank=2)) == 2

    emb_BE = ccs_dist.encode_image_pruned(loaded, images_BCHW, pruned=["L0.H1"])
    emb_SBE = ccs_dist.encode_image_head_sets(loaded, images_BCHW, [["L0.H1"], []])
    keep_BLH = torch.ones(3, loaded.num_layers, loaded.num_heads)
    full_BE = ccs_dist.encode_image_masked(loaded, images_BCHW, keep_BLH)
    assert emb_BE.shape == full_BE.shape and emb_SBE.shape[:2] == (2, 3)
    torch.testing.assert_close(emb_SBE[1], full_BE, rtol=1e-4, atol=1e-5)


def test_flat_api_survives_importing_every_submodule(tmp_path):
    imported = _import_every_submodule()
    assert "ccs_dist.spans.textspan" in imported and "ccs_dist.decomposition.image_set" in imported
    for name in FUNCTIONS:
        assert callable(getattr(ccs_dist, name)) and not isinstance(getattr(ccs_dist, name), types.ModuleType), name
    _call_each(tmp_path, 0)
    _call_each(tmp_path, 1)  # the second call used to hit "'module' object is not callable"
    assert isinstance(sys.modules["ccs_dist.spans.textspan"], types.ModuleType)  # the submodules stay importable


def test_flat_api_in_a_fresh_interpreter_after_submodule_imports():
    code = ("import ccs_dist.spans.textspan, ccs_dist.decomposition.image_set\nimport ccs_dist\n"
            "from ccs_dist.spans.textspan import SpanResult\nfrom ccs_dist import textspan, decompose\n"
            "assert callable(ccs_dist.textspan) and callable(ccs_dist.decompose), (ccs_dist.textspan, ccs_dist.decompose)\n"
            "assert textspan is ccs_dist.textspan and decompose is ccs_dist.decompose\n"
            "import ccs_dist.spans.textspan as again\nassert again is ccs_dist.spans.textspan\nprint('ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
