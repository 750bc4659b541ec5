"""How far a judge's 0/1 verdicts can be believed against reference verdicts: Cohen's kappa and raw agreement
with 95 % intervals, false-positive and false-negative rates; for verdicts that carry a probability, a
calibration curve and the expected calibration error (ECE).

Pure numpy. Intervals: kappa by a percentile bootstrap over pairs (seeded, so a table is reproducible), raw
agreement and the two rates by the Wilson score interval. ``truth`` is the reference (gold pairs, an annotator),
``pred`` the judge.
"""

from __future__ import annotations

import math

import numpy as np

from ccs_dist.ccs.scores import cohen_kappa

Z95 = 1.959963984540054
BOOTSTRAP = 2000


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (nan, nan when n == 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def kappa_interval(truth_N: np.ndarray, pred_N: np.ndarray, n_boot: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap 95 % interval of Cohen's kappa over the N pairs (resamples with an undefined
    kappa, all one class on both sides, are dropped)."""
    truth_N, pred_N = np.asarray(truth_N, bool), np.asarray(pred_N, bool)
    n = len(truth_N)
    if n < 2:
        return float("nan"), float("nan")
    idx_BN = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    t_BN, p_BN = truth_N[idx_BN], pred_N[idx_BN]
    po_B = (t_BN == p_BN).mean(axis=1)
    pt_B, pp_B = t_BN.mean(axis=1), p_BN.mean(axis=1)
    pe_B = pt_B * pp_B + (1 - pt_B) * (1 - pp_B)
    ok_B = pe_B < 1.0
    k_B = (po_B[ok_B] - pe_B[ok_B]) / (1.0 - pe_B[ok_B])
    if not len(k_B):
        return float("nan"), float("nan")
    lo, hi = np.quantile(k_B, [0.025, 0.975])
    return float(lo), float(hi)


def verdict_agreement(truth_N: np.ndarray, pred_N: np.ndarray, seed: int = 0) -> dict[str, float | int]:
    """n, kappa (+ interval), raw agreement (+ interval), FPR (judge yes where truth is no) and FNR (judge no
    where truth is yes), each rate with its interval and the counts behind it."""
    truth_N, pred_N = np.asarray(truth_N, bool), np.asarray(pred_N, bool)
    if truth_N.shape != pred_N.shape or truth_N.ndim != 1:
        raise ValueError(f"verdict_agreement needs two 1-d vectors of one length, got {truth_N.shape} and {pred_N.shape}")
    n, n_pos = len(truth_N), int(truth_N.sum())
    n_neg = n - n_pos
    agree = int((truth_N == pred_N).sum())
    fp, fn = int((pred_N & ~truth_N).sum()), int((~pred_N & truth_N).sum())
    k_lo, k_hi = kappa_interval(truth_N, pred_N, seed=seed)
    a_lo, a_hi = wilson(agree, n)
    fpr_lo, fpr_hi = wilson(fp, n_neg)
    fnr_lo, fnr_hi = wilson(fn, n_pos)
    nan = float("nan")
    return {
        "n": n, "n_positive": n_pos, "n_negative": n_neg,
        "kappa": cohen_kappa(truth_N, pred_N) if n else nan, "kappa_lo": k_lo, "kappa_hi": k_hi,
        "raw_agreement": agree / n if n else nan, "raw_agreement_lo": a_lo, "raw_agreement_hi": a_hi,
        "fpr": fp / n_neg if n_neg else nan, "fpr_lo": fpr_lo, "fpr_hi": fpr_hi,
        "fnr": fn / n_pos if n_pos else nan, "fnr_lo": fnr_lo, "fnr_hi": fnr_hi,
    }


def calibration_curve(truth_N: np.ndarray, prob_N: np.ndarray, n_bins: int = 10) -> tuple[list[dict], float]:
    """Equal-width bins of the judge's probability of "fits": per bin its count, mean probability and the observed
    share of truth "fits"; and ECE = sum over bins of (count / N) * |observed - mean probability|."""
    truth_N, prob_N = np.asarray(truth_N, float), np.asarray(prob_N, float)
    if np.any((prob_N < 0) | (prob_N > 1)) or np.any(~np.isfinite(prob_N)):
        raise ValueError("calibration needs probabilities in [0, 1]")
    bin_N = np.minimum((prob_N * n_bins).astype(int), n_bins - 1)
    rows, ece = [], 0.0
    for b in range(n_bins):
        m = bin_N == b
        if not m.any():
            continue
        mean_p, observed = float(prob_N[m].mean()), float(truth_N[m].mean())
        ece += m.sum() / len(prob_N) * abs(observed - mean_p)
        rows.append({"bin": b, "lo": b / n_bins, "hi": (b + 1) / n_bins, "n": int(m.sum()),
                     "mean_probability": mean_p, "observed": observed})
    return rows, float(ece)
