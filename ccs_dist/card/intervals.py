"""Bootstrap intervals of CCS over image half-samples: TextSpan again on each half, its spans labelled and
judged through the same (cached) scoring, CCS and CCS@K recomputed.

The probe images are dealt (seeded) into ``buckets``; a resample is the union of a random half of them and
its moments are the sum of theirs (as span stability does, :mod:`ccs_dist.spans.stability`), so the
resamples cost one read of the decomposition. The interval of a share (CCS@K) or of a head's CCS is the
2.5 and 97.5 percentiles over the resamples; its point value stays the full-data one. The scoring requests
are bounded up front by :func:`requests_bound` (cached answers are not asked again).

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import polars as pl

from ccs_dist.artifacts.schemas import CCS_INTERVALS_SCHEMA, SPANS_SCHEMA, TRUNK_UNIT
from ccs_dist.ccs.scores import ccs_at_k
from ccs_dist.decomposition.image_set import DecompositionArtifact
from ccs_dist.decomposition.moments import bucket_of_images, usable_buckets
from ccs_dist.spans.stability import sum_moments
from ccs_dist.spans.table import SpanConfig
from ccs_dist.spans.textspan import stream_moments, textspan_heads

HEAD = ["model", "layer", "head"]


def requests_bound(resamples: int, heads: int, m: int, judges: int) -> int:
    """At most one label and ``m x judges`` verdicts per head and resample (fewer when answers are cached)."""
    return resamples * heads * (1 + m * judges)


def half_samples(n_buckets: int, resamples: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(seed + 2)  # independent of the deal and of span stability's choice
    return [sorted(rng.choice(n_buckets, size=n_buckets // 2, replace=False).tolist()) for _ in range(resamples)]


def resample_spans(model_key: str, artifact: DecompositionArtifact, texts: Sequence[str], text_emb_TE: np.ndarray,
                   config: SpanConfig, resamples: int, seed: int, device="cpu") -> list[pl.DataFrame]:
    """One spans table (stability columns null) per half-sample of the probe images (trunk heads, as the card's)."""
    n_buckets = usable_buckets(artifact.n_images, config.stability.buckets)
    if n_buckets < 2:
        raise ValueError(f"{artifact.n_images} probe images are too few for half-samples (at least 8)")
    bucket_N = bucket_of_images(artifact.n_images, n_buckets, seed)
    choices = half_samples(n_buckets, resamples, seed)
    n_heads = int(artifact.manifest["num_heads"])
    n_total = len(artifact.layers) * n_heads
    results: list[list] = [[] for _ in choices]
    for lo in range(0, n_total, max(1, n_heads)):  # one layer's moments (and its buckets') at a time
        _, buckets = stream_moments(artifact, slice(lo, lo + n_heads), bucket_N, device=device)
        for r, chosen in enumerate(choices):
            results[r] += textspan_heads(sum_moments([buckets[i] for i in chosen]), text_emb_TE, texts, m=config.m,
                                         rank=config.rank, device=device, rank_policy=config.rank_policy,
                                         precision=config.precision)
    tables = []
    for part in results:
        rows = [(model_key, artifact.layers[g // n_heads], g % n_heads, rank, text, float(var), config.rank, res.rank, None, None,
                 TRUNK_UNIT)
                for g, res in enumerate(part) for rank, (text, var) in enumerate(zip(res.texts, res.variances))]
        tables.append(pl.DataFrame(rows, schema=SPANS_SCHEMA, orient="row"))
    return tables


def score_resamples(tables: Sequence[pl.DataFrame], score: Callable[[pl.DataFrame], pl.DataFrame]) -> list[pl.DataFrame]:
    """The ccs table of every resample's spans (``score``: spans -> ccs, the score stage's own scoring)."""
    return [score(t) for t in tables]


def _percentiles(values: Sequence[float]) -> tuple[float | None, float | None]:
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], float)
    return (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v.size else (None, None)


def ccs_intervals_table(full_ccs: pl.DataFrame, resampled: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """``ccs_intervals``: per model and k, the full-data CCS@K share and its half-sample interval."""
    full = ccs_at_k(full_ccs)
    parts = [ccs_at_k(c) for c in resampled]
    rows = []
    for r in full.iter_rows(named=True):
        draws = [p.filter((pl.col("model") == r["model"]) & (pl.col("k") == r["k"]))["fraction"] for p in parts]
        lo, hi = _percentiles([d[0] if len(d) else None for d in draws])
        rows.append({"model": r["model"], "k": r["k"], "share": r["fraction"], "lo": lo, "hi": hi, "resamples": len(parts)})
    return pl.DataFrame(rows, schema=CCS_INTERVALS_SCHEMA, orient="row")


def head_ccs_bounds(resampled: Sequence[pl.DataFrame]) -> pl.DataFrame:
    """(model, layer, head, lo, hi): each head's CCS interval over the resamples (flagged resamples left out)."""
    if not resampled:
        return pl.DataFrame(schema={**{c: SPANS_SCHEMA[c] for c in HEAD}, "lo": pl.Float64, "hi": pl.Float64})
    both = pl.concat([c.filter(~pl.col("flagged")).select(HEAD + ["ccs"]) for c in resampled])
    return both.group_by(HEAD).agg(pl.col("ccs").cast(pl.Float64).quantile(0.025, "linear").alias("lo"),
                                   pl.col("ccs").cast(pl.Float64).quantile(0.975, "linear").alias("hi"))


def with_ccs_bounds(head_scores: pl.DataFrame, bounds: pl.DataFrame) -> pl.DataFrame:
    """``head_scores`` with the ``ccs`` rows' lo/hi from :func:`head_ccs_bounds`."""
    joined = head_scores.join(bounds.rename({"lo": "_lo", "hi": "_hi"}), on=HEAD, how="left")
    is_ccs = pl.col("score") == "ccs"
    return joined.with_columns(pl.when(is_ccs).then(pl.col("_lo")).otherwise(pl.col("lo")).alias("lo"),
                               pl.when(is_ccs).then(pl.col("_hi")).otherwise(pl.col("hi")).alias("hi")).drop("_lo", "_hi")
