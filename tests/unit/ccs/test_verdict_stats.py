"""Agreement of 0/1 verdicts with a reference: kappa and its bootstrap interval, Wilson intervals, FPR/FNR, ECE;
each against a null that must fail it (a judge answering at random, a miscalibrated probability)."""

from __future__ import annotations

import numpy as np
import pytest

from ccs_dist.ccs.verdict_stats import calibration_curve, kappa_interval, verdict_agreement, wilson


def test_wilson_matches_the_textbook_interval_and_stays_in_0_1():
    lo, hi = wilson(8, 10)  # 0.8 of 10: the Wilson interval is [0.490, 0.943]
    assert (round(lo, 3), round(hi, 3)) == (0.49, 0.943)
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0
    assert all(np.isnan(wilson(0, 0)))


def test_a_random_judge_has_a_kappa_interval_covering_0_a_good_one_does_not():
    rng = np.random.default_rng(3)
    truth = rng.random(300) < 0.4
    random_judge = rng.random(300) < 0.5
    good_judge = np.where(rng.random(300) < 0.9, truth, ~truth)  # 10 % of verdicts flipped
    r = verdict_agreement(truth, random_judge)
    assert r["kappa_lo"] < 0 < r["kappa_hi"], r
    g = verdict_agreement(truth, good_judge)
    assert g["kappa_lo"] > 0.6 and g["kappa_lo"] <= g["kappa"] <= g["kappa_hi"], g
    assert g["raw_agreement_lo"] <= g["raw_agreement"] <= g["raw_agreement_hi"]


def test_false_positive_and_negative_rates_count_what_they_say():
    truth = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    pred = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], bool)
    r = verdict_agreement(truth, pred)
    assert (r["n"], r["n_positive"], r["n_negative"]) == (10, 4, 6)
    assert r["fpr"] == pytest.approx(2 / 6) and r["fnr"] == pytest.approx(1 / 4)
    assert r["raw_agreement"] == pytest.approx(0.7)
    always_yes = verdict_agreement(truth, np.ones(10, bool))
    assert always_yes["fpr"] == 1.0 and always_yes["fnr"] == 0.0 and always_yes["kappa"] == 0.0


def test_the_kappa_interval_is_reproducible_and_covers_a_known_kappa():
    rng = np.random.default_rng(0)
    truth = rng.random(400) < 0.5
    pred = np.where(rng.random(400) < 0.8, truth, ~truth)  # expected kappa 0.6
    assert kappa_interval(truth, pred, seed=1) == kappa_interval(truth, pred, seed=1)
    lo, hi = kappa_interval(truth, pred)
    assert lo < 0.6 < hi and hi - lo < 0.25


def test_calibration_ece_is_small_for_calibrated_probabilities_and_large_for_overconfident_ones():
    rng = np.random.default_rng(1)
    p = rng.random(5000)
    truth = rng.random(5000) < p  # calibrated by construction
    rows, ece = calibration_curve(truth, p)
    assert ece < 0.03 and sum(r["n"] for r in rows) == 5000
    _, ece_bad = calibration_curve(truth, np.where(p > 0.5, 1.0, 0.0))  # the null: every verdict certain
    assert ece_bad > 0.2
    with pytest.raises(ValueError, match="probabilities"):
        calibration_curve(truth, p + 1)
