"""Calibration of the offline judge on the default pool's family tags: the one number the tags set.

Two verdict rules (``ScoreConfig.offline_verdict``):

- ``threshold`` (earlier releases): a description fits a label when score(d, label) clears a threshold; the
  threshold maximises balanced accuracy over *every* (description, family name) pair of the default pool. Most
  of those negatives are far-off families, so the threshold lets near ones through: on the shipped gold pairs a
  colour line is accepted for a shape label.
- ``rank`` (the default): a description fits a label when the label's score beats a share ``q`` of the
  vocabulary's concepts for that description (the label must rank among the description's top concepts);
  ``q`` maximises balanced accuracy of each description's own family against its :data:`HARD_NEGATIVES`
  highest-scoring wrong families, the negatives a judge meets (a head's label is the concept nearest its lines).

Neither rule sees the gold pairs (:mod:`ccs_dist.llm.gold`); a test checks they share no line with the pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

HARD_NEGATIVES = 3  # wrong families per description in the rank rule's calibration


class Scorer(Protocol):
    vocabulary: tuple[str, ...]

    def scores(self, texts: Sequence[str], concepts: Sequence[str] | None = None) -> np.ndarray: ...


@dataclass(frozen=True)
class Calibration:
    """The judge threshold and how well it separates matching from non-matching (description, family)."""

    embedder: str
    scoring: str
    threshold: float
    balanced_accuracy: float  # mean of true-positive and true-negative rates at the threshold
    accuracy: float  # plain accuracy over every (description, family) pair
    nearest_family_accuracy: float  # how often the highest-scoring family is the description's own
    n_descriptions: int
    n_families: int
    verdict: str = "threshold"


def family_phrase(family: str) -> str:
    """``'time_of_day'`` -> ``'time of day'`` (how a family reads as a label)."""
    return family.replace("_", " ").strip()


def rank_share(scorer: Scorer, texts: Sequence[str], concepts: Sequence[str]) -> np.ndarray:
    """[T, O] share of the vocabulary's concepts that score strictly below each concept, per description (the rank
    rule's number: (V - 1) / V = above every other vocabulary concept).

    A concept of the vocabulary takes its own column of the vocabulary's scores, so it ties with itself exactly:
    scored again on its own (another matrix shape, another thread count: a Ray worker's), its score can differ in
    the last bit and count itself as below or not by chance, and a run's verdicts would depend on where it ran.
    """
    vocab_TV = scorer.scores(texts)
    column = {c: i for i, c in enumerate(scorer.vocabulary)}
    conc_TO = np.empty((len(texts), len(concepts)), dtype=vocab_TV.dtype)
    outside = [o for o, c in enumerate(concepts) if c not in column]
    if outside:
        conc_TO[:, outside] = scorer.scores(texts, [concepts[o] for o in outside])
    for o, c in enumerate(concepts):
        if c in column:
            conc_TO[:, o] = vocab_TV[:, column[c]]
    return (vocab_TV[:, :, None] < conc_TO[:, None, :]).mean(axis=1)


def verdict_scores(scorer: Scorer, texts: Sequence[str], concepts: Sequence[str], verdict: str) -> np.ndarray:
    """[T, O] the number a verdict rule compares with its threshold."""
    return rank_share(scorer, texts, concepts) if verdict == "rank" else scorer.scores(texts, concepts)


def family_scores(scorer: Scorer, texts: Sequence[str], families: Sequence[str],
                  verdict: str = "threshold") -> tuple[np.ndarray, np.ndarray]:
    """([T, O] scores of every description against every family name, [T, O] True where it is its own family)."""
    fams = sorted(set(families))
    if len(fams) < 2:
        raise ValueError("calibration needs at least two families")
    score_TO = verdict_scores(scorer, texts, [family_phrase(f) for f in fams], verdict)
    own_TO = np.zeros_like(score_TO, dtype=bool)
    own_TO[np.arange(len(families)), [fams.index(f) for f in families]] = True
    return score_TO, own_TO


def hard_negative_mask(score_TO: np.ndarray, own_TO: np.ndarray, k: int = HARD_NEGATIVES) -> np.ndarray:
    """[T, O] True for each description's own family and its ``k`` highest-scoring wrong families."""
    wrong_TO = np.where(own_TO, -np.inf, score_TO)
    top_Tk = np.argsort(-wrong_TO, axis=1, kind="stable")[:, :k]
    keep_TO = own_TO.copy()
    keep_TO[np.arange(len(score_TO))[:, None], top_Tk] = True
    return keep_TO


def best_threshold(score_TO: np.ndarray, own_TO: np.ndarray, keep_TO: np.ndarray | None = None) -> tuple[float, float, float]:
    """(threshold, balanced accuracy, accuracy): the score threshold maximising balanced accuracy over all pairs
    (those of ``keep_TO`` only, when given)."""
    keep = np.ones(score_TO.shape, bool) if keep_TO is None else keep_TO
    s, y = score_TO[keep], own_TO[keep]
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    n_pos, n_neg = y.sum(), (~y).sum()
    tp = np.cumsum(y)  # predicting positive for the first i+1 pairs (threshold = s[i])
    fp = np.cumsum(~y)
    bal = 0.5 * (tp / n_pos + (n_neg - fp) / n_neg)
    last_of_ties = np.r_[s[1:] != s[:-1], True]  # a threshold keeps all pairs with equal score
    bal = np.where(last_of_ties, bal, -1.0)
    i = int(np.argmax(bal))
    return float(s[i]), float(bal[i]), float((tp[i] + (n_neg - fp[i])) / len(s))


def balanced_accuracy(score_TO: np.ndarray, own_TO: np.ndarray, threshold: float) -> float:
    fit_TO = score_TO >= threshold
    return float(0.5 * (fit_TO[own_TO].mean() + (~fit_TO[~own_TO]).mean()))


def calibrate(scorer, texts: Sequence[str], families: Sequence[str], verdict: str = "threshold") -> Calibration:
    """The threshold of ``verdict``'s rule maximising balanced accuracy (rank: against the hard negatives)."""
    score_TO, own_TO = family_scores(scorer, texts, families, verdict)
    keep_TO = hard_negative_mask(score_TO, own_TO) if verdict == "rank" else None
    thr, bal, acc = best_threshold(score_TO, own_TO, keep_TO)
    nearest = float(own_TO[np.arange(len(texts)), score_TO.argmax(axis=1)].mean())
    return Calibration(scorer.embedder.name, scorer.scoring, thr, bal, acc, nearest, len(texts), score_TO.shape[1], verdict)
