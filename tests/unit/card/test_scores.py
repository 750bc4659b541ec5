"""The card's scores as pure functions: known values, and each null able to fail."""

from __future__ import annotations

import numpy as np
import pytest

from ccs_dist.card import scores as S


def test_auroc_and_balanced_accuracy_known_values():
    assert S.auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert S.auroc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert S.auroc(np.array([1.0]), np.array([1.0])) == 0.5
    assert S.balanced_accuracy(np.array([1.0, -1.0]), np.array([-1.0, -2.0])) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        S.auroc(np.array([]), np.array([1.0]))


def test_weighted_coherence_of_identical_and_orthogonal_images():
    same = np.tile([[1.0, 0.0, 0.0]], (4, 1))
    assert S.weighted_coherence(same, np.ones(4)) == pytest.approx(1.0)
    assert S.weighted_coherence(np.eye(3), np.array([1.0, 2.0, 3.0])) == pytest.approx(0.0)
    # the weight goes where the activation is: two aligned heavy images outweigh a light stray one
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert S.weighted_coherence(emb, np.array([10.0, 10.0, 0.1])) > S.weighted_coherence(emb, np.ones(3))


def test_detection_separates_and_its_null_does_not():
    rng = np.random.default_rng(0)
    evidence = rng.normal(size=200)
    evidence[:10] += 5.0  # the "top images" show the label
    pool = np.arange(200)
    negatives = np.arange(100, 120)
    out = S.detection(evidence, np.arange(10), negatives, pool, 64, rng)
    assert out["auroc"][0] > 0.95 and abs(out["auroc"][1] - 0.5) < 0.1
    # positives drawn at random: the score itself is at chance (it can fail)
    chance = S.detection(evidence, np.arange(150, 160), negatives, pool, 8, rng)
    assert chance["auroc"][0] < 0.8


def test_simulation_and_its_permutation_null():
    rng = np.random.default_rng(1)
    act = rng.normal(size=300)
    rho, null = S.simulation(act, act + 0.3 * rng.normal(size=300), 32, rng)
    assert rho > 0.9 and abs(null) < 0.05
    rho_random, _ = S.simulation(act, rng.normal(size=300), 4, rng)
    assert abs(rho_random) < 0.2


def test_monosemanticity_beats_its_null_only_for_a_coherent_set():
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(100, 16))
    emb[:8] = emb[0] + 0.05 * rng.normal(size=(8, 16))  # eight near-copies
    value, null = S.monosemanticity(emb, np.arange(8), np.ones(8), np.arange(100), 32, rng)
    assert value > 0.9 and null < 0.3
    incoherent, _ = S.monosemanticity(emb, np.arange(50, 58), np.ones(8), np.arange(100), 4, rng)
    assert incoherent < 0.3
