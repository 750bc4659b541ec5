"""Span stage: decompose (or reuse), embed the description pool (or reuse), TextSpan on every head.

The result is the spans table and its metadata; :func:`write_spans_run` writes them as a run folder
(the ``textspan`` command), the job keeps them in its stage store. With a ``toy:N`` probe set the job also
scores every head against the known factors (:func:`ground_truth_table`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from ccs_dist.core.errors import UserError
from ccs_dist.artifacts.run_dir import RunDir
from ccs_dist.models.loading import LoadedModel
from ccs_dist.spans.table import SpanConfig, spans_table
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.stages.decompose import DecomposeResult, Layers, decompose_shard_stage, decompose_stage
from ccs_dist.stages.model import at_precision, stage_precisions
from ccs_dist.artifacts.store import ArtifactStore, atomic_write_json
from ccs_dist.artifacts.schemas import write_table
from ccs_dist.text.embed import embed_pool
from ccs_dist.text.index import load_or_build_index
from ccs_dist.stages.sources import resolve_pool
from ccs_dist.data.images import resolve_image_set
from ccs_dist.decomposition.image_set import DecompositionArtifact
from ccs_dist.report.head_images import head_image_tables
from ccs_dist.artifacts.store import read_json
from ccs_dist.toy.ground_truth import ground_truth_from_decomposition

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpansResult:
    table: pl.DataFrame
    metadata: dict[str, Any]

    @property
    def heads(self) -> int:
        return self.table.select("layer", "head").n_unique()


def checked_pool(pool: str, cache_dir: str, m: int):
    """The description pool, with at least ``m`` descriptions (cheap: callers check it before loading a model)."""
    descriptions = resolve_pool(pool, cache_dir)
    if m > len(descriptions):
        raise UserError(f"m={m} spans per head cannot be drawn from a pool of {len(descriptions)} descriptions: lower --m")
    return descriptions


def spans_stage(loaded: LoadedModel, *, probe: DecomposeConfig, layers: Layers, pool: str, spans: SpanConfig,
                cache_dir: str, progress: bool) -> SpansResult:
    """Decompose the probe set (or reuse it) in the span precision, then :func:`spans_of_decomposition`."""
    checked_pool(pool, cache_dir, spans.m)
    if spans.rank > loaded.embed_dim:
        raise UserError(f"rank={spans.rank} exceeds the embedding size E={loaded.embed_dim} of {loaded.key}: lower --rank")
    decomposed = decompose_stage(at_precision(loaded, spans.precision), probe, layers=layers, cache_dir=cache_dir,
                                 progress=progress, **_moment_deal(spans))
    return spans_of_decomposition(loaded, decomposed, probe=probe, pool=pool, spans=spans, cache_dir=cache_dir,
                                  progress=progress)


def spans_probe_shard(loaded: LoadedModel, index: int, *, probe: DecomposeConfig, layers: Layers, spans: SpanConfig,
                      cache_dir: str) -> dict[str, Any]:
    """One shard of the decomposition :func:`spans_stage` reads (same precision and moments), done ahead of it."""
    return decompose_shard_stage(at_precision(loaded, spans.precision), probe, index, layers=layers, cache_dir=cache_dir,
                                 **_moment_deal(spans))


def _moment_deal(spans: SpanConfig) -> dict[str, int]:
    """The stability buckets a moments-only decomposition keeps: those the spans' stability columns use."""
    return {"moment_buckets": spans.stability.buckets, "moment_seed": spans.stability.seed}


def spans_of_decomposition(loaded: LoadedModel, decomposed: DecomposeResult, *, probe: DecomposeConfig, pool: str,
                           spans: SpanConfig, cache_dir: str, progress: bool) -> SpansResult:
    """TextSpan on a finished decomposition (its moments): whatever produced it, one pass or merged shards."""
    descriptions = checked_pool(pool, cache_dir, spans.m)
    view = at_precision(loaded, spans.precision)
    artifact = decomposed.artifact
    t0 = time.perf_counter()
    store = ArtifactStore(cache_dir)
    text_emb = embed_pool(view, descriptions, store, progress=progress)
    index = load_or_build_index(text_emb, store) if spans.method == "faiss" else None
    table = spans_table(view.key, artifact, descriptions, text_emb, spans, device=view.device, index=index)
    metadata = {
        **loaded.metadata(),
        "stage_precision": stage_precisions(spans.precision, loaded.precision),
        "images": probe.images,
        "n_images": artifact.n_images,
        "skipped_images": len(artifact.manifest["skipped"]),
        "layers": list(artifact.layers),
        "pool": descriptions.source,
        "pool_size": len(descriptions),
        "pool_blank_dropped": descriptions.n_blank_dropped,
        "pool_duplicates_dropped": descriptions.n_duplicates_dropped,
        "spans": asdict(spans),
        "decomposition": str(artifact.path),
        "seconds": {"decompose": round(decomposed.seconds, 3), "textspan": round(time.perf_counter() - t0, 3)},
    }
    if loaded.random_init:
        log.warning("RANDOM INIT: the spans of %s describe an untrained network", loaded.key)
    return SpansResult(table, metadata)


def write_spans_run(result: SpansResult, out: str | Path) -> Path:
    """``OUT/tables/spans.parquet`` and ``OUT/manifest.json``: a run folder the later commands read."""
    layout = RunDir(out)
    path = write_table(result.table, layout.table("spans"), result.metadata)
    atomic_write_json(layout.manifest, {"tables": {"spans": str(path)}, **result.metadata})
    return path


def head_image_tables_of(loaded: LoadedModel, result: SpansResult, probe: DecomposeConfig, cache_dir: str) -> dict[str, pl.DataFrame]:
    """Each head's top and bottom probe images (and their thumbnails) from the decomposition the spans read,
    on the worker that holds it, so a Ray run's report needs no access to the workers' cache. A moments-only
    decomposition keeps no per-image heads: none (the report says so)."""
    path = Path(result.metadata["decomposition"])
    artifact = DecompositionArtifact(path, read_json(path / "manifest.json"))
    if artifact.keep == "moments":
        return {}
    return head_image_tables(loaded.key, artifact, resolve_image_set(probe.images, cache_dir))


def ground_truth_table(loaded: LoadedModel, result: SpansResult, probe: DecomposeConfig, cache_dir: str) -> pl.DataFrame | None:
    """With a ``toy:N`` or ``plant:N`` probe set (its factors are known): every head scored against them; else None."""
    if not str(probe.images).startswith(("toy:", "plant:")):
        return None

    path = Path(result.metadata["decomposition"])
    artifact = DecompositionArtifact(path, read_json(path / "manifest.json"))
    return ground_truth_from_decomposition(loaded.key, artifact, resolve_image_set(probe.images, cache_dir).root)
