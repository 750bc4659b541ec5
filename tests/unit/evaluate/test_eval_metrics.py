"""Retrieval, zero-shot and bias metrics against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from ccs_dist.evaluate.biasmetrics import max_skew_at_k, ndkl_at_k
from ccs_dist.evaluate.retrieval import ranks_text_to_video, ranks_video_to_text, retrieval_metrics
from ccs_dist.evaluate.zeroshot import topk_correct

SIM = np.array([[0.9, 0.1, 0.3], [0.8, 0.2, 0.5], [0.1, 0.7, 0.6]])  # text i's video is video i


def test_ranks_by_hand():
    assert ranks_text_to_video(SIM, [0, 1, 2]).tolist() == [1, 3, 2]
    assert ranks_video_to_text(SIM, [0, 1, 2]).tolist() == [1, 2, 1]


def test_retrieval_metrics_by_hand():
    m = retrieval_metrics(SIM, [0, 1, 2])
    assert m["t2v_R@1"] == pytest.approx(100 / 3)
    assert m["t2v_R@5"] == 100.0 and m["t2v_R@50"] == 100.0
    assert m["t2v_MedR"] == 2.0 and m["t2v_MeanR"] == 2.0
    assert m["v2t_R@1"] == pytest.approx(200 / 3)
    assert m["v2t_MedR"] == 1.0 and m["v2t_MeanR"] == pytest.approx(4 / 3)


def test_video_to_text_uses_best_caption_and_ties_favour_truth():
    # 4 captions: two for video 0, one each for videos 1 and 2
    sim = np.array([[0.1, 0.9, 0.0], [0.8, 0.2, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.4]])
    v2t = ranks_video_to_text(sim, [0, 0, 1, 2])
    # video 0: best own caption 0.8; other captions' scores 0.5, 0.0 -> rank 1
    # video 1: own 0.5; others 0.9, 0.2, 0.0 -> rank 2 ; video 2: own 0.4, others 0, 0, 0.5 -> rank 2
    assert v2t.tolist() == [1, 2, 2]
    t2v = ranks_text_to_video(sim, [0, 0, 1, 2])
    assert t2v.tolist() == [2, 1, 1, 1]  # caption 2 ties at 0.5 with the others: ground truth wins ties


def test_maxskew_and_ndkl_by_hand():
    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])  # p_data = (0.5, 0.5)
    q0 = np.array([10, 9, 8, 0, 0, 7, 0, 0, 0, 0], dtype=float)  # top-4 groups in order: 0, 0, 0, 1
    q1 = np.array([0, 0, 0, 0, 0, 4, 3, 2, 1, 0.5])  # top-4 all group 1
    scores = np.stack([q0, q1])
    skew = max_skew_at_k(scores, groups, 2, k=4)
    assert skew[0] == pytest.approx(math.log(0.75 / 0.5))
    assert skew[1] == pytest.approx(math.log(2.0))  # group 0 absent from the top 4: skipped
    w = [1 / math.log2(i + 1) for i in range(1, 5)]
    kl4 = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    expected0 = (math.log(2) * (w[0] + w[1] + w[2]) + kl4 * w[3]) / sum(w)
    ndkl = ndkl_at_k(scores, groups, 2, k=4)
    assert ndkl[0] == pytest.approx(expected0)
    assert ndkl[1] == pytest.approx(math.log(2))  # every prefix is all group 1: KL = ln 2 at each rank


def test_alternating_ranking_ndkl_by_hand_max_skew_zero_and_k_checked():
    groups = np.array([0, 1, 0, 1])
    scores = np.array([[4.0, 3.0, 2.0, 1.0]])
    # prefixes 0 | 0 1 | 0 1 0 | 0 1 0 1 against p_data = (0.5, 0.5): KL = ln 2, 0, KL(2/3, 1/3), 0
    w = [1 / math.log2(i + 1) for i in range(1, 5)]
    kl3 = (2 / 3) * math.log(4 / 3) + (1 / 3) * math.log(2 / 3)
    assert ndkl_at_k(scores, groups, 2, k=4)[0] == pytest.approx((w[0] * math.log(2) + w[2] * kl3) / sum(w))
    assert max_skew_at_k(scores, groups, 2, k=4)[0] == pytest.approx(0.0)  # the top 4 hold both groups equally
    with pytest.raises(ValueError):
        max_skew_at_k(scores, groups, 2, k=5)


def test_topk_correct_counts():
    logits = torch.tensor([[[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]]])  # S=1, B=2, C=3
    labels = torch.tensor([1, 2])
    assert topk_correct(logits, labels, 1).tolist() == [1]
    assert topk_correct(logits, labels, 2).tolist() == [2]
