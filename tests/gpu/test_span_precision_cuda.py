"""On CUDA (skipped without): a bf16 evaluation model still decomposes in fp32 for the spans, so its spans equal
those of an fp32 model; asking for bf16 spans records bf16 (written for a device run; not run on CPU CI)."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_bf16_evaluation_model_gives_fp32_spans(tmp_path):
    from ccs_dist.models import load_model
    from ccs_dist.runners import DecomposeRun, ModelSpec, TextSpanRun, run_textspan
    from ccs_dist.span_stability import StabilityConfig
    from ccs_dist.spans import SpanConfig

    def spans(precision: str, span_precision: str = "fp32"):
        loaded = load_model("ViT-B-32", None, device="cuda", precision=precision)
        run = TextSpanRun(DecomposeRun(ModelSpec("ViT-B-32", None, "cuda", precision), "synthetic:64", str(tmp_path / "c")),
                          spans=SpanConfig(precision=span_precision, stability=StabilityConfig(resamples=2)), out=None)
        return run_textspan(run, loaded=loaded)

    fp32, bf16_eval = spans("fp32"), spans("bf16")
    assert bf16_eval["metadata"]["stage_precision"] == {"decompose": "fp32", "text_embeddings": "fp32", "textspan": "fp64",
                                                        "evaluate": "bf16"}
    assert bf16_eval["table"]["text"].to_list() == fp32["table"]["text"].to_list()
    bf16_spans = spans("bf16", "bf16")
    assert bf16_spans["metadata"]["stage_precision"]["decompose"] == "bf16"
