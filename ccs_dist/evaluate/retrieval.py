"""Retrieval metrics from a text x video similarity matrix.

Ranks are 1-based; a candidate outranks the ground truth only with a strictly larger score (ties go to the
ground truth). Recall@K is in percent. With several captions per video, video->text uses the best-ranked
caption of each video.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_KS = (1, 5, 10, 50)


def ranks_text_to_video(sim_TV: np.ndarray, video_of_text_T: Sequence[int]) -> np.ndarray:
    """Rank of each text's video among all videos: [T]."""
    sim = np.asarray(sim_TV, dtype=np.float64)
    gt = np.asarray(video_of_text_T)
    gt_score = sim[np.arange(sim.shape[0]), gt]
    return 1 + (sim > gt_score[:, None]).sum(1)


def ranks_video_to_text(sim_TV: np.ndarray, video_of_text_T: Sequence[int]) -> np.ndarray:
    """Rank of each video's best caption among all texts: [V] (videos without a caption are an error)."""
    sim_VT = np.asarray(sim_TV, dtype=np.float64).T
    gt = np.asarray(video_of_text_T)
    ranks = np.empty(sim_VT.shape[0], dtype=np.int64)
    for v in range(sim_VT.shape[0]):
        own = np.flatnonzero(gt == v)
        if own.size == 0:
            raise ValueError(f"video {v} has no caption")
        best = sim_VT[v, own].max()
        others = np.ones(sim_VT.shape[1], dtype=bool)
        others[own] = False
        ranks[v] = 1 + (sim_VT[v, others] > best).sum()
    return ranks


def rank_metrics(ranks: np.ndarray, prefix: str) -> dict[str, float]:
    """R@1/5/10/50 (percent), MedR and MeanR from 1-based ranks."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out = {f"{prefix}R@{k}": float(100.0 * (ranks <= k).mean()) for k in RECALL_KS}
    out[f"{prefix}MedR"] = float(np.median(ranks))
    out[f"{prefix}MeanR"] = float(ranks.mean())
    return out


def retrieval_metrics(sim_TV: np.ndarray, video_of_text_T: Sequence[int]) -> dict[str, float]:
    """Text->video (``t2v_``) and video->text (``v2t_``) metrics of one similarity matrix."""
    return {
        **rank_metrics(ranks_text_to_video(sim_TV, video_of_text_T), "t2v_"),
        **rank_metrics(ranks_video_to_text(sim_TV, video_of_text_T), "v2t_"),
    }
