"""The spans stage: decomposition artifact + description pool -> the ``spans`` table (5 texts per head).

Besides the texts, each row carries its head's requested and effective TextSpan rank and its span
stability (see :mod:`ccs_dist.spans.stability`), so a reader can tell a head's spans from float noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
import torch

from ccs_dist.decomposition.image_set import DecompositionArtifact
from ccs_dist.spans.stability import StabilityConfig, span_stability
from ccs_dist.decomposition.moments import bucket_of_images, usable_buckets
from ccs_dist.text.pool import DescriptionPool
from ccs_dist.decomposition.moments import HeadMoments
from ccs_dist.spans.textspan import PrefilterConfig, RankPolicy, SpanResult, numerical_basis, stream_moments, textspan_heads, textspan_heads_prefiltered
from ccs_dist.artifacts.schemas import SPANS_SCHEMA, TRUNK_UNIT

log = logging.getLogger(__name__)

# per-head facts repeated on each of the head's rows; the score stage copies them into the ccs table
HEAD_FACTS = ("requested_rank", "effective_rank", "stability", "span1_stability", "unit")


@dataclass(frozen=True)
class SpanConfig:
    """TextSpan options: the job spec section ``spans`` and the span flags of ``ccs-dist textspan``
    (:mod:`ccs_dist.stages.config`; ``internal`` fields are not spec fields)."""

    m: int = field(default=5, metadata={"ge": 1, "help": "descriptions per head"})
    rank: int = field(default=80, metadata={"ge": 1, "help": (
        "requested TextSpan rank (at most the embedding size); with rank_policy numerical each head uses min(rank, "
        "its numerical rank)")})
    method: Literal["exact", "faiss"] = field(default="exact", metadata={"help": (
        "exact, or faiss (candidates from a FAISS search along each head's principal directions, then exact "
        "TextSpan on them; for very large pools)")})
    rank_policy: RankPolicy = field(default="numerical", metadata={"help": (
        "numerical (cap each head's rank at its numerical rank, so rounding cannot flip spans) or reference (the "
        "reference code's min(rank, N), noise directions included)")})
    precision: Literal["fp32", "bf16"] = field(default="fp32", metadata={"help": (
        "of the decomposition and text embeddings feeding TextSpan: fp32 (bf16 changes the spans) or bf16 (CUDA only)")})
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    prefilter: PrefilterConfig = field(default=PrefilterConfig(), metadata={"internal": True})
    # bucket + full Gram matrices held at once; heads are processed in chunks
    max_moment_bytes: int = field(default=1 << 30, metadata={"internal": True})


def _heads_per_chunk(n_heads: int, dim: int, n_moments: int, budget: int) -> int:
    per_head = n_moments * dim * dim * 8
    return max(1, min(n_heads, budget // per_head))


def spans_table(
    model_key: str,
    artifact: DecompositionArtifact,
    pool: DescriptionPool,
    text_emb_TE: np.ndarray,
    config: SpanConfig = SpanConfig(),
    device: torch.device | str = "cpu",
    index=None,
) -> pl.DataFrame:
    """One row per (layer, head, rank): the spanning text, the fraction of the head's variance it explains,
    the head's requested/effective rank, its span stability (null when stability is off) and its kind of unit
    (a trunk head; an attention pooling's heads and MLP at layer = the trunk's depth, see ``SPANS_SCHEMA``)."""
    if config.method == "faiss" and index is None:
        raise ValueError("method='faiss' needs a text index")

    def run_spans(moments: HeadMoments, basis_GEX: torch.Tensor | None = None) -> list[SpanResult]:
        if config.method == "faiss":
            return textspan_heads_prefiltered(moments, index, text_emb_TE, pool.texts, config.m, config.rank, config.prefilter,
                                              device, rank_policy=config.rank_policy, precision=config.precision)
        return textspan_heads(moments, text_emb_TE, pool.texts, m=config.m, rank=config.rank, device=device,
                              rank_policy=config.rank_policy, precision=config.precision, basis_GEX=basis_GEX)

    stab = config.stability
    n_buckets = usable_buckets(artifact.n_images, stab.buckets) if stab.enabled else 0
    if stab.enabled and n_buckets < 2:
        log.warning("span stability needs at least 8 probe images (%d given): stability columns left empty", artifact.n_images)
    bucket_N = bucket_of_images(artifact.n_images, n_buckets, stab.seed) if n_buckets >= 2 else None
    n_heads = int(artifact.manifest["num_heads"])
    n_trunk = len(artifact.layers) * n_heads
    n_total = n_trunk + len(artifact.pool_units)
    dim = int(artifact.manifest["embed_dim"])
    chunk = _heads_per_chunk(n_total, dim, 1 + (n_buckets if bucket_N is not None else 0), config.max_moment_bytes)
    results, stability = [], []
    for lo in range(0, n_total, chunk):
        full, buckets = stream_moments(artifact, slice(lo, lo + chunk), bucket_N, device=device)
        part = run_spans(full)
        results += part
        reduce = buckets and config.method == "exact" and config.rank_policy == "numerical"
        basis = numerical_basis(full, config.precision) if reduce else None
        stability += span_stability(buckets, part, run_spans, stab, basis)
        del full, buckets

    rows = []
    # the pooling's units sit one past the trunk's last layer
    pool_layer = int(artifact.manifest["model_metadata"]["num_layers"]) if artifact.pool_units else None
    for g, (res, st) in enumerate(zip(results, stability)):
        if g < n_trunk:
            layer, head, unit = artifact.layers[g // n_heads], g % n_heads, TRUNK_UNIT
        else:
            layer, head, unit = pool_layer, g - n_trunk, artifact.pool_units[g - n_trunk]
        for rank, (text, var) in enumerate(zip(res.texts, res.variances)):
            rows.append((model_key, layer, head, rank, text, float(var), config.rank, res.rank, st.stability, st.span1_stability, unit))
    _log_ranks(results, config)
    log.info("TextSpan: %d heads x %d descriptions from a pool of %d", len(results), config.m, len(pool))
    return pl.DataFrame(rows, schema=SPANS_SCHEMA, orient="row")


def _log_ranks(results: list[SpanResult], config: SpanConfig) -> None:
    capped = [r.rank for r in results if r.rank < config.rank]
    if config.rank_policy == "numerical" and capped:
        log.info("TextSpan rank: %d of %d heads capped at their numerical rank (%d..%d) below the requested %d",
                 len(capped), len(results), min(capped), max(capped), config.rank)


def span_facts(spans: pl.DataFrame) -> pl.DataFrame | None:
    """One row per head (model, layer, head + the per-head facts present in ``spans``), or None for an old table."""
    present = [c for c in HEAD_FACTS if c in spans.columns]
    if not present:
        return None
    return spans.group_by(["model", "layer", "head"]).agg(pl.col(c).first() for c in present)
