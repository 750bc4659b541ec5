"""The card's scores as pure functions of arrays (no model, no files): each with the null it is read against.

* **Detection**: the judge's evidence ``s_N`` that each image shows the label, for images that activate the
  head (positives) and random held-out images (negatives). ``auroc`` is the probability that a positive's
  evidence exceeds a negative's (ties count half); ``balanced_accuracy`` is the mean of the true-positive and
  true-negative rates of the judge's decision ``s > 0``. Null: the same with the positives replaced by random
  held-out sets of the same size.
* **Simulation**: Spearman correlation between the head's activation and the reference similarity to the label
  over the held-out images. Null: the same with the images' similarities permuted.
* **Monosemanticity**: activation-weighted mean pairwise cosine of the top images' reference embeddings,
  ``sum_{i<j} w_i w_j cos_ij / sum_{i<j} w_i w_j``. Null: random held-out sets of the same size and weights.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ccs_dist.ccs.scores import spearman_rho


def auroc(pos_N: np.ndarray, neg_N: np.ndarray) -> float:
    """P(positive > negative) + P(tie) / 2 over all pairs (Mann-Whitney U / (n_pos n_neg))."""
    pos, neg = np.asarray(pos_N, float)[:, None], np.asarray(neg_N, float)[None, :]
    if pos.size == 0 or neg.size == 0:
        raise ValueError("auroc needs at least one positive and one negative")
    return float(((pos > neg).sum() + 0.5 * (pos == neg).sum()) / (pos.size * neg.size))


def balanced_accuracy(pos_N: np.ndarray, neg_N: np.ndarray, threshold: float = 0.0) -> float:
    """Mean of the share of positives with evidence > threshold and the share of negatives at or below it."""
    return float(0.5 * ((np.asarray(pos_N) > threshold).mean() + (np.asarray(neg_N) <= threshold).mean()))


def weighted_coherence(emb_NE: np.ndarray, w_N: np.ndarray) -> float:
    """Activation-weighted mean pairwise cosine of the rows of ``emb_NE`` (weights clipped at 0; equal if all 0)."""
    unit = emb_NE / np.linalg.norm(emb_NE, axis=1, keepdims=True).clip(1e-12)
    w = np.clip(np.asarray(w_N, float), 0.0, None)
    if w.sum() <= 0:
        w = np.ones_like(w)
    cos_NN, ww_NN = unit @ unit.T, np.outer(w, w)
    off = ~np.eye(len(w), dtype=bool)
    denom = ww_NN[off].sum()
    return float((ww_NN[off] * cos_NN[off]).sum() / denom) if denom > 0 else float("nan")


def null_mean(draw: Callable[[np.random.Generator], float], draws: int, rng: np.random.Generator) -> float:
    """Mean of ``draws`` values of a score recomputed on random sets (or permutations) from ``rng``."""
    return float(np.nanmean([draw(rng) for _ in range(draws)]))


def detection(evidence_N: np.ndarray, positives: np.ndarray, negatives: np.ndarray, pool: np.ndarray, draws: int,
              rng: np.random.Generator) -> dict[str, tuple[float, float]]:
    """``{auroc, balanced_accuracy}: (value, null mean)`` of the evidence (indices into ``evidence_N``); the null's
    positives are random sets of ``len(positives)`` from ``pool`` (the held-out images) outside ``negatives``."""
    outside = np.setdiff1d(pool, negatives)
    out = {}
    for name, fn in (("auroc", auroc), ("balanced_accuracy", balanced_accuracy)):
        value = fn(evidence_N[positives], evidence_N[negatives])
        null = null_mean(lambda r: fn(evidence_N[r.choice(outside, len(positives), replace=False)], evidence_N[negatives]),
                         draws, rng)
        out[name] = (value, null)
    return out


def simulation(activation_N: np.ndarray, similarity_N: np.ndarray, draws: int, rng: np.random.Generator) -> tuple[float, float]:
    """(Spearman rho of activation vs similarity, its mean under permuted similarities)."""
    value = spearman_rho(activation_N, similarity_N)
    return value, null_mean(lambda r: spearman_rho(activation_N, r.permutation(similarity_N)), draws, rng)


def monosemanticity(emb_NE: np.ndarray, top_N: np.ndarray, w_N: np.ndarray, pool: np.ndarray, draws: int,
                    rng: np.random.Generator) -> tuple[float, float]:
    """(coherence of the top images ``top_N`` with weights ``w_N``, its mean over random sets of ``pool``)."""
    value = weighted_coherence(emb_NE[top_N], w_N)
    null = null_mean(lambda r: weighted_coherence(emb_NE[r.choice(pool, len(top_N), replace=False)], r.permutation(w_N)),
                     draws, rng)
    return value, null
