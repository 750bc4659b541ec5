"""Social-bias metrics of a ranking: MaxSkew@k and NDKL@k (Geyik et al. 2019), per query.

For a query, the images are ranked by similarity; ``p_data`` is each group's share of all (labelled)
images and ``p_top`` its share of the top k.

* MaxSkew@k = max over groups present in the top k of ``ln(p_top / p_data)`` (groups absent from the top k
  are skipped, as in the paper's code).
* NDKL@k = sum_{i=1..k} KL(D_i || p_data) / log2(i + 1), divided by sum_{i=1..k} 1 / log2(i + 1), where
  D_i is the group distribution of the top i (0 ln 0 = 0).

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import numpy as np


def _top_groups(scores_QN: np.ndarray, groups_N: np.ndarray, k: int) -> np.ndarray:
    scores = np.asarray(scores_QN, dtype=np.float64)
    if not 1 <= k <= scores.shape[1]:
        raise ValueError(f"k={k} must be in 1..{scores.shape[1]} (the number of images)")
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.asarray(groups_N)[order]  # [Q, k]


def _data_share(groups_N: np.ndarray, n_groups: int) -> np.ndarray:
    counts = np.bincount(np.asarray(groups_N), minlength=n_groups).astype(np.float64)
    return counts / counts.sum()


def max_skew_at_k(scores_QN: np.ndarray, groups_N: np.ndarray, n_groups: int, k: int = 10) -> np.ndarray:
    """MaxSkew@k per query: [Q]."""
    p_data = _data_share(groups_N, n_groups)
    top = _top_groups(scores_QN, groups_N, k)
    out = np.empty(top.shape[0])
    for q, row in enumerate(top):
        p_top = np.bincount(row, minlength=n_groups) / k
        present = p_top > 0
        out[q] = np.max(np.log(p_top[present] / p_data[present]))
    return out


def ndkl_at_k(scores_QN: np.ndarray, groups_N: np.ndarray, n_groups: int, k: int = 10) -> np.ndarray:
    """NDKL@k per query: [Q]."""
    p_data = _data_share(groups_N, n_groups)
    top = _top_groups(scores_QN, groups_N, k)
    weights = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.empty(top.shape[0])
    for q, row in enumerate(top):
        counts = np.zeros(n_groups)
        total = 0.0
        for i, g in enumerate(row):
            counts[g] += 1
            d = counts / (i + 1)
            nz = d > 0
            total += weights[i] * float(np.sum(d[nz] * np.log(d[nz] / p_data[nz])))
        out[q] = total / weights.sum()
    return out
