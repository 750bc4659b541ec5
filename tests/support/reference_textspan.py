"""A plain, loop-by-loop TextSpan written straight from the algorithm's description (test oracle only).

Full N x T projections, numpy SVD, no sufficient statistics: slow and obviously faithful.
"""

from __future__ import annotations

import numpy as np


def reference_textspan(data_NE: np.ndarray, text_TE: np.ndarray, m: int, rank: int) -> tuple[list[int], list[float]]:
    data = np.asarray(data_NE, dtype=np.float64)
    text = np.asarray(text_TE, dtype=np.float64)
    _, _, vh = np.linalg.svd(data, full_matrices=False)
    vh = vh[:rank]
    text = text @ vh.T @ np.linalg.inv(vh @ vh.T) @ vh  # project the texts onto the top-rank span
    data = data - data.mean(axis=0, keepdims=True)
    total = data.var(axis=0, ddof=1).sum()
    chosen, fractions = [], []
    for _ in range(m):
        projection = data @ text.T  # [N, T]
        top = int(np.argmax(projection.std(axis=0, ddof=1)))
        direction = text[top]
        norm2 = direction @ direction
        before = data.var(axis=0, ddof=1).sum()
        data = data - np.outer(data @ direction / norm2, direction)
        text = text - np.outer(text @ direction / norm2, direction)
        chosen.append(top)
        fractions.append((before - data.var(axis=0, ddof=1).sum()) / total)
    return chosen, fractions
