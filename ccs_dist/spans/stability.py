"""Span stability from streamed moments: how much a head's five spans depend on which probe images were used.

Images are dealt at random (seeded) into B buckets and the moments (count, sum, Gram) of every bucket are
streamed alongside the full-data moments, in the same single read of the decomposition artifact. A resample
is the union of a random half of the buckets: its moments are the sum of those buckets' moments, so
TextSpan on K resamples needs no second pass over the images. Per head:

- ``stability``: mean over the K resamples of the Jaccard index between the set of the resample's spans and
  the set of the full-data spans (1.0: every half of the data picks the same texts);
- ``span1_stability``: the fraction of resamples whose first span is the full-data first span.

With the numerical rank policy every bucket's moments are first projected onto the head's numerical-rank
basis (D ~ 65 of E = 512 dimensions): a subset of the images spans no direction the full data lacks, so the
resample spans are the same up to rounding, at a D^3 instead of E^3 eigen-decomposition each.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ccs_dist.decomposition.moments import HeadMoments
from ccs_dist.spans.textspan import SpanResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StabilityConfig:
    """The job spec section ``spans.stability`` (flags ``--stability-resamples`` ...)."""

    resamples: int = field(default=8, metadata={"ge": 0, "help": "K random half-samples of the probe images for the stability columns (0: none, the columns are then null)"})
    buckets: int = field(default=10, metadata={"ge": 2, "help": "B buckets the images are dealt into; a resample takes B // 2 of them"})
    seed: int = field(default=0, metadata={"help": "seed of the deal into buckets"})

    def __post_init__(self):
        if self.resamples < 0 or self.buckets < 2:
            raise ValueError(f"stability needs resamples >= 0 and buckets >= 2, got {self.resamples} and {self.buckets}")

    @property
    def enabled(self) -> bool:
        return self.resamples > 0


@dataclass(frozen=True)
class HeadStability:
    stability: float | None  # mean Jaccard of the span sets, resample vs full data
    span1_stability: float | None  # fraction of resamples keeping span 1


def sum_moments(parts: Sequence[HeadMoments]) -> HeadMoments:
    out = HeadMoments.__new__(HeadMoments)
    out.count = sum(p.count for p in parts)
    out.sum_GE = torch.stack([p.sum_GE for p in parts]).sum(0)
    out.gram_GEE = torch.stack([p.gram_GEE for p in parts]).sum(0)
    return out


def _jaccard(a: Sequence[int], b: Sequence[int]) -> float:
    sa, sb = set(a), set(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def span_stability(
    buckets: Sequence[HeadMoments],
    full: Sequence[SpanResult],
    run_spans: Callable[[HeadMoments, torch.Tensor | None], list[SpanResult]],
    config: StabilityConfig,
    basis_GEX: torch.Tensor | None = None,
) -> list[HeadStability]:
    """Stability of every head, ``run_spans(moments, basis)`` being the same TextSpan (rank, policy, method) as
    for ``full``; with ``basis_GEX`` the resamples run in those bases' coordinates."""
    if not config.enabled or len(buckets) < 2:
        return [HeadStability(None, None)] * len(full)
    if basis_GEX is not None:
        buckets = [b.project(basis_GEX) for b in buckets]
    rng = np.random.default_rng(config.seed + 1)  # resample choice independent of the bucket deal
    half = len(buckets) // 2
    jaccard = np.zeros(len(full))
    first = np.zeros(len(full))
    for _ in range(config.resamples):
        chosen = sorted(rng.choice(len(buckets), size=half, replace=False).tolist())
        resampled = run_spans(sum_moments([buckets[i] for i in chosen]), basis_GEX)
        for g, (res, ref) in enumerate(zip(resampled, full)):
            jaccard[g] += _jaccard(res.indices, ref.indices)
            first[g] += res.indices[0] == ref.indices[0]
    k = config.resamples
    return [HeadStability(float(j / k), float(f / k)) for j, f in zip(jaccard, first)]
