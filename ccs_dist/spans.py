"""The spans stage: decomposition artifact + description pool -> the ``spans`` table (5 texts per head)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import torch

from ccs_dist.decompose import DecompositionArtifact
from ccs_dist.textspan import PrefilterConfig, moments_from_artifact, textspan_heads, textspan_heads_prefiltered
from ccs_dist.text.pool import DescriptionPool

log = logging.getLogger(__name__)

SPANS_SCHEMA = {"model": pl.String, "layer": pl.Int64, "head": pl.Int64, "rank": pl.Int64, "text": pl.String, "variance": pl.Float64}


@dataclass(frozen=True)
class SpanConfig:
    m: int = 5  # descriptions per head
    rank: int = 80  # TextSpan rank
    method: Literal["exact", "faiss"] = "exact"
    prefilter: PrefilterConfig = PrefilterConfig()


def spans_table(
    model_key: str,
    artifact: DecompositionArtifact,
    pool: DescriptionPool,
    text_emb_TE: np.ndarray,
    config: SpanConfig = SpanConfig(),
    device: torch.device | str = "cpu",
    index=None,
) -> pl.DataFrame:
    """One row per (layer, head, rank): the spanning text and the fraction of the head's variance it explains."""
    moments = moments_from_artifact(artifact, device=device)
    if config.method == "faiss":
        if index is None:
            raise ValueError("method='faiss' needs a text index")
        results = textspan_heads_prefiltered(moments, index, text_emb_TE, pool.texts, config.m, config.rank, config.prefilter, device)
    else:
        results = textspan_heads(moments, text_emb_TE, pool.texts, m=config.m, rank=config.rank, device=device)
    n_heads = int(artifact.manifest["num_heads"])
    rows = []
    for g, res in enumerate(results):
        layer, head = artifact.layers[g // n_heads], g % n_heads
        for rank, (text, var) in enumerate(zip(res.texts, res.variances)):
            rows.append((model_key, layer, head, rank, text, float(var)))
    log.info("TextSpan: %d heads x %d descriptions from a pool of %d", len(results), config.m, len(pool))
    return pl.DataFrame(rows, schema=SPANS_SCHEMA, orient="row")
