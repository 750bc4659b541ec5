"""On CUDA (skipped without): a bf16 evaluation model still decomposes in fp32 for the spans, so its spans equal
those of an fp32 model; asking for bf16 spans records bf16 (written for a device run; not run on CPU CI)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.slow, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_bf16_evaluation_model_gives_fp32_spans(tmp_path):
    from ccs_dist.models import load_model
    from ccs_dist.decomposition.config import DecomposeConfig
    from ccs_dist.spans.stability import StabilityConfig
    from ccs_dist.spans.table import SpanConfig
    from ccs_dist.stages.spans import spans_stage

    def spans(precision: str, span_precision: str = "fp32"):
        loaded = load_model("ViT-B-32", None, device="cuda", precision=precision)
        return spans_stage(loaded, probe=DecomposeConfig(images="synthetic:64"), layers=4, pool="default",
                           spans=SpanConfig(precision=span_precision, stability=StabilityConfig(resamples=2)),
                           cache_dir=str(tmp_path / "c"), progress=False)

    fp32, bf16_eval = spans("fp32"), spans("bf16")
    assert bf16_eval.metadata["stage_precision"] == {"decompose": "fp32", "text_embeddings": "fp32", "textspan": "fp64",
                                                     "evaluate": "bf16"}
    assert bf16_eval.table["text"].to_list() == fp32.table["text"].to_list()
    bf16_spans = spans("bf16", "bf16")
    assert bf16_spans.metadata["stage_precision"]["decompose"] == "bf16"
