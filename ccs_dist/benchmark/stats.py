"""The statistics of the checks: AUROC, and the null summary (mean, 95th percentile, p-value) of a statistic.

A p-value is ``(1 + #{null >= observed}) / (1 + n)`` (one-sided, the observed value counted as one draw of
the null), so it is never 0 and a check with n null draws cannot pass below ``1 / (1 + n)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def auroc(score_N: np.ndarray, positive_N: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative), ties counted half; None without both classes."""
    s, y = np.asarray(score_N, np.float64), np.asarray(positive_N, bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return None
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


@dataclass(frozen=True)
class Null:
    value: float | None
    null_mean: float | None
    null_p95: float | None
    p_value: float | None
    n: int


def summarise(observed: float | None, null: list[float | None]) -> Null:
    """The observed statistic against its null draws (draws that are None are left out)."""
    draws = np.array([d for d in null if d is not None and np.isfinite(d)], np.float64)
    if observed is None or not np.isfinite(observed) or not len(draws):
        return Null(observed, float(draws.mean()) if len(draws) else None,
                    float(np.percentile(draws, 95)) if len(draws) else None, None, len(draws))
    p = (1 + int((draws >= observed - 1e-12).sum())) / (1 + len(draws))
    return Null(float(observed), float(draws.mean()), float(np.percentile(draws, 95)), float(p), len(draws))


def permutation_null(statistic: Callable[[np.ndarray], float | None], labels_N: np.ndarray, n: int, seed: int) -> Null:
    """``statistic(labels)`` against ``n`` seeded permutations of ``labels`` across the rows."""
    rng = np.random.default_rng(seed)
    labels_N = np.asarray(labels_N, dtype=object)
    return summarise(statistic(labels_N), [statistic(rng.permutation(labels_N)) for _ in range(n)])
