"""Stage runners shared by the CLI and the jobs: resolve inputs, reuse cached artifacts, write tables.

These compose the compute modules; they hold no maths of their own.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ccs_dist.decompose import DecomposeConfig, DecompositionArtifact, decompose_image_set
from ccs_dist.errors import UserError
from ccs_dist.images import resolve_image_set
from ccs_dist.models.loading import LoadedModel, load_model
from ccs_dist.spans import SpanConfig, spans_table
from ccs_dist.store import ArtifactStore, atomic_write_json
from ccs_dist.tables import write_table
from ccs_dist.text.embed import embed_pool
from ccs_dist.text.index import load_or_build_index
from ccs_dist.text.pool import resolve_pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    pretrained: str | None = None
    device: str | None = None
    precision: str | None = None


@dataclass(frozen=True)
class DecomposeRun:
    model: ModelSpec
    images: str
    cache_dir: str = "cache"
    decompose: DecomposeConfig = field(default_factory=DecomposeConfig)


@dataclass
class DecomposeOutcome:
    loaded: LoadedModel
    artifact: DecompositionArtifact
    seconds: float


def load_run_model(spec: ModelSpec) -> LoadedModel:
    return load_model(spec.arch, spec.pretrained, device=spec.device, precision=spec.precision)


def at_precision(loaded: LoadedModel, precision: str) -> LoadedModel:
    """The same model (shared weights) computing under ``precision``: the span stage runs fp32 even when
    evaluation runs bf16, because bf16 head terms (~5e-3 relative error) change which texts TextSpan picks."""
    if precision == loaded.precision:
        return loaded
    if precision == "bf16" and loaded.device.type != "cuda":
        raise UserError(f"span precision bf16 needs a CUDA device ({loaded.key} is on {loaded.device}): use fp32")
    view = dataclasses.replace(loaded, precision=precision)
    view._weights_hash = getattr(loaded, "_weights_hash", None)  # same weights: keep the hash if computed
    return view


def stage_precisions(span_precision: str, model_precision: str) -> dict[str, str]:
    """What each stage computes in, for tables' metadata and the run manifest."""
    return {"decompose": span_precision, "text_embeddings": span_precision, "textspan": "fp64",
            "evaluate": model_precision}


def run_decompose(run: DecomposeRun, loaded: LoadedModel | None = None) -> DecomposeOutcome:
    t0 = time.perf_counter()
    loaded = loaded or load_run_model(run.model)
    store = ArtifactStore(run.cache_dir)
    image_set = resolve_image_set(run.images, run.cache_dir)
    artifact = decompose_image_set(loaded, image_set, store, run.decompose)
    return DecomposeOutcome(loaded, artifact, time.perf_counter() - t0)


@dataclass(frozen=True)
class TextSpanRun:
    probe: DecomposeRun
    pool: str = "default"
    spans: SpanConfig = field(default_factory=SpanConfig)
    out: str | None = "reports/textspan"  # None: return the table without writing it


def run_textspan(run: TextSpanRun, loaded: LoadedModel | None = None) -> dict[str, Any]:
    """Decompose (or reuse), embed the pool (or reuse), run TextSpan on every head, write ``spans.parquet``."""
    pool = resolve_pool(run.pool, run.probe.cache_dir)  # validate cheap inputs before loading a model
    if run.spans.m > len(pool):
        raise UserError(f"m={run.spans.m} spans per head cannot be drawn from a pool of {len(pool)} descriptions: lower --m")
    model = loaded or load_run_model(run.probe.model)
    if run.spans.rank > model.embed_dim:
        raise UserError(f"rank={run.spans.rank} exceeds the embedding size E={model.embed_dim} of {model.key}: lower --rank")
    loaded = at_precision(model, run.spans.precision)
    outcome = run_decompose(run.probe, loaded)
    artifact = outcome.artifact
    t0 = time.perf_counter()
    store = ArtifactStore(run.probe.cache_dir)
    text_emb = embed_pool(loaded, pool, store, progress=run.probe.decompose.progress)
    index = load_or_build_index(text_emb, store) if run.spans.method == "faiss" else None
    table = spans_table(loaded.key, artifact, pool, text_emb, run.spans, device=loaded.device, index=index)
    seconds = time.perf_counter() - t0
    metadata = {
        **model.metadata(),
        "stage_precision": stage_precisions(run.spans.precision, model.precision),
        "images": run.probe.images,
        "n_images": artifact.n_images,
        "skipped_images": len(artifact.manifest["skipped"]),
        "layers": list(artifact.layers),
        "pool": pool.source,
        "pool_size": len(pool),
        "pool_blank_dropped": pool.n_blank_dropped,
        "pool_duplicates_dropped": pool.n_duplicates_dropped,
        "spans": asdict(run.spans),
        "decomposition": str(artifact.path),
        "seconds": {"decompose": round(outcome.seconds, 3), "textspan": round(seconds, 3)},
    }
    path = None
    if run.out is not None:
        out = Path(run.out)
        path = write_table(table, out / "tables" / "spans.parquet", metadata)
        atomic_write_json(out / "manifest.json", {"tables": {"spans": str(path)}, **metadata})
    if loaded.random_init:
        log.warning("RANDOM INIT: the spans of %s describe an untrained network", loaded.key)
    return {"spans": str(path), "heads": table.select("layer", "head").n_unique(), "metadata": metadata, "table": table}
