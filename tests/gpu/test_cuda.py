"""CUDA checks (skipped without a GPU): the decomposition identity under fp32 and bf16, masked encoding on GPU."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("precision, tol", [("fp32", 1e-4), ("bf16", 3e-2)])
def test_decomposition_identity_on_cuda(precision, tol):
    from ccs_dist.decomposition.kernel import decompose
    from ccs_dist.models import load_model

    loaded = load_model("ViT-B-16", None, device="cuda", precision=precision)
    images = torch.randn(8, 3, 224, 224, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    d = decompose(loaded, images, layers=4)
    rel = ((d.heads.sum((1, 2)) + d.rest - d.embedding).norm(dim=-1) / d.embedding.norm(dim=-1)).max()
    assert float(rel) <= tol
    assert d.heads.device.type == "cuda" and d.heads.dtype == torch.float32


def test_masked_engine_on_cuda_matches_cpu():
    from ccs_dist.models import load_model
    from ccs_dist.models.masked import encode_image_head_sets

    sets = [[], ["L11.H0", "L10.H3"], ["L8.H1"]]
    images = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    cpu = encode_image_head_sets(load_model("ViT-B-32", None, device="cpu"), images, sets)
    gpu = encode_image_head_sets(load_model("ViT-B-32", None, device="cuda", precision="fp32"), images, sets)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-3)


def test_textspan_on_cuda_equals_cpu():
    import numpy as np

    from ccs_dist.decomposition.moments import HeadMoments
    from ccs_dist.spans.textspan import textspan_heads

    rng = np.random.default_rng(0)
    text = rng.normal(size=(500, 64))
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    data = rng.normal(size=(6, 400, 64)) @ np.diag(np.linspace(3, 0.1, 64))
    texts = [str(i) for i in range(500)]
    cpu = textspan_heads(HeadMoments.from_data(data), text, texts, m=5, rank=20)
    gpu = textspan_heads(HeadMoments.from_data(data, device="cuda"), text, texts, m=5, rank=20, device="cuda")
    assert [r.indices for r in cpu] == [r.indices for r in gpu]
