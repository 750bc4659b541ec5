"""Toy ground truth: how well single SAE latents pick out the toy world's factor values.

For every factor value ``v`` the label of an image is ``factor == v``; a latent's activation scores the images and
its AUROC against the label is computed; "best" is the highest over latents (in-sample, biased upwards: the null
of permuted labels or a random-init model measures the bias) and "held out" picks the best latent on one half of
the images and reports its AUROC on the other half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from ccs_dist.data.toy.scenes import read_probe_labels
from ccs_dist.data.toy.world import FACTOR_NAMES, FACTORS
from ccs_dist.sae.train import collect_activations


@dataclass(frozen=True)
class GroundTruthConfig:
    seed: int = 0  # of the held-out split and of the label permutation


def auroc_matrix(scores_N_latents: np.ndarray, labels_N: np.ndarray) -> np.ndarray:
    """AUROC of every column of ``scores`` [N, n_latents] for the boolean ``labels_N`` (ties count half): [n_latents]."""
    y = np.asarray(labels_N, bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return np.full(scores_N_latents.shape[1], np.nan)
    ranks = rankdata(scores_N_latents, axis=0)
    return (ranks[y].sum(0) - pos * (pos + 1) / 2) / (pos * neg)


def factor_aurocs(codes: np.ndarray, values_NF: np.ndarray, config: GroundTruthConfig = GroundTruthConfig(),
                  permute: bool = False) -> list[dict]:
    """One row per (factor, value): the best latent, its in-sample AUROC and the held-out AUROC.

    ``codes`` [N, n_latents] activations, ``values_NF`` the toy labels (value index per factor); ``permute``
    shuffles the images' labels first (the null)."""
    rng = np.random.default_rng(config.seed)
    values_NF = np.asarray(values_NF)
    if permute:
        values_NF = values_NF[rng.permutation(len(values_NF))]
    n = len(values_NF)
    split = np.random.default_rng(config.seed + 1).permutation(n)
    a, b = split[: n // 2], split[n // 2 :]
    rows = []
    for f, factor in enumerate(FACTOR_NAMES):
        for v, value in enumerate(FACTORS[factor]):
            y = values_NF[:, f] == v
            au = auroc_matrix(codes, y)
            au_a = auroc_matrix(codes[a], y[a])
            pick = int(np.nanargmax(au_a))
            rows.append({"factor": factor, "value": value, "best_latent": int(np.nanargmax(au)), "best_auroc": float(np.nanmax(au)),
                         "held_out_latent": pick, "held_out_auroc": float(auroc_matrix(codes[b][:, [pick]], y[b])[0])})
    return rows


def summary(rows: list[dict]) -> dict[str, float]:
    return {"best_auroc_mean": float(np.mean([r["best_auroc"] for r in rows])),
            "held_out_auroc_mean": float(np.mean([r["held_out_auroc"] for r in rows]))}


def toy_labels(image_set) -> np.ndarray:
    """The factor value indices [N, F] of a toy probe set, in image-set order (from its ``labels.csv``)."""
    labels = read_probe_labels(image_set.root)
    return np.array([[labels[image_set.image_id(i)][f] for f in FACTOR_NAMES] for i in range(len(image_set))])


def toy_codes(loaded, sae, image_set, batch_size: int = 128) -> np.ndarray:
    """SAE activations [N, n_latents] of every image of ``image_set`` (in order)."""
    x_ND, _ = collect_activations(loaded, image_set, sae.site, batch_size)
    with torch.no_grad():
        return sae.encode(x_ND).cpu().numpy()
