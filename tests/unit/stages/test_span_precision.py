"""The span stage's precision: a bf16 evaluation model is viewed at fp32 for the spans (same weights), the
decomposition cache keys on that precision, and bf16 spans off CUDA are a one-line error."""

from __future__ import annotations

import dataclasses

import pytest

from ccs_dist.decomposition.image_set import decomposition_key
from ccs_dist.core.errors import UserError
from ccs_dist.data.images import resolve_image_set
from ccs_dist.stages.model import at_precision, stage_precisions


def test_bf16_model_gives_an_fp32_view_for_spans(tiny, tmp_path):
    evaluating = dataclasses.replace(tiny, precision="bf16")  # as loaded for bf16 evaluation on CUDA
    spans_view = at_precision(evaluating, "fp32")
    assert spans_view.precision == "fp32" and spans_view.model is evaluating.model
    assert spans_view.weights_hash == tiny.weights_hash
    assert at_precision(tiny, "fp32") is tiny
    images = resolve_image_set("synthetic:4", tmp_path)
    assert decomposition_key(spans_view, images, (2,))["precision"] == "fp32"
    assert decomposition_key(evaluating, images, (2,))["precision"] == "bf16"
    assert stage_precisions("fp32", "bf16") == {"decompose": "fp32", "text_embeddings": "fp32", "textspan": "fp64",
                                                "evaluate": "bf16"}
    with pytest.raises(UserError, match="span precision bf16 needs a CUDA device"):
        at_precision(tiny, "bf16")
