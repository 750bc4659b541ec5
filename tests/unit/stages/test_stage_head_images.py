"""The spans stage computes each head's top and bottom images on the worker that holds the decomposition
(so Ray and local runs write the same table without the report reading a worker's cache); a moments-only
decomposition has no per-image heads, and the stage and the report say so instead of failing."""

from __future__ import annotations

import json

from ccs_dist.report.head_images import add_head_images
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.stages.model import ModelSpec
from ccs_dist.spans.table import SpanConfig
from ccs_dist.stages.spans import head_image_tables_of, spans_stage


def _spans(tmp_path, keep: str):
    loaded = ModelSpec("ccs-tiny", None, device="cpu").load()
    probe = DecomposeConfig(images="synthetic:24", batch_size=8, workers=0, keep=keep)
    spans = SpanConfig(m=2, rank=8)
    result = spans_stage(loaded, probe=probe, layers=2, pool="default", spans=spans, cache_dir=str(tmp_path), progress=False)
    return loaded, probe, result


def test_the_spans_stage_finds_each_heads_images(tmp_path):
    loaded, probe, result = _spans(tmp_path, "heads")
    tables = head_image_tables_of(loaded, result, probe, str(tmp_path))
    images = tables["head_images"]
    heads = result.table.select("layer", "head").unique()
    assert images.select("layer", "head").unique().sort("layer", "head").equals(heads.sort("layer", "head"))
    assert set(images["image_id"]) <= set(tables["head_thumbnails"]["image_id"])
    assert all(uri.startswith("data:image/") for uri in tables["head_thumbnails"]["data_uri"])


def test_a_moments_only_decomposition_gives_no_images_and_the_report_says_why(tmp_path):
    loaded, probe, result = _spans(tmp_path, "moments")
    assert head_image_tables_of(loaded, result, probe, str(tmp_path)) == {}
    run = tmp_path / "run"
    stage = run / "stages" / "m" / "spans"
    stage.mkdir(parents=True)
    (stage / "manifest.json").write_text(json.dumps({"model": loaded.key, "stage": "spans", "metadata": result.metadata}))
    notes = add_head_images(run)
    assert len(notes) == 1 and "keeps only TextSpan's moments" in notes[0]
