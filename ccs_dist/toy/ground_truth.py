"""Ground truth for the toy world: how much of each head's direct contribution each factor explains.

For a head's contributions x_n (the decomposition's terms divided by the norm of each image's embedding,
as TextSpan sees them) and a factor with classes c, the variance share is eta^2 = between-class over total
variance, summed over the E dimensions: sum_c n_c |mean_c - mean|^2 / sum_n |x_n - mean|^2. It is 0 when
the factor tells nothing about the head's output and 1 when the head's output is a function of it.
Selectivity is the share of the head's explained variance that goes to one factor:
eta^2_f / sum_g eta^2_g (1 / F when the head treats every factor alike). A head's *probe factor* is its
highest-share factor. Linear probes are not used: a 64-d head output decodes easy factors from almost any
head, even at random init.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from ccs_dist.data.planted import world as plant_world
from ccs_dist.data.toy.scenes import LABELS_FILE, read_probe_labels

GROUND_TRUTH_SCHEMA = {"model": pl.Utf8, "layer": pl.Int64, "head": pl.Int64, "factor": pl.Utf8,
                       "variance_share": pl.Float64, "selectivity": pl.Float64}


def variance_share(x_NE: np.ndarray, classes_N: np.ndarray) -> float:
    """eta^2 of the class labels on the rows of ``x_NE`` (0 for a constant output)."""
    x = np.asarray(x_NE, np.float64)
    centred = x - x.mean(0)
    total = float((centred**2).sum())
    if total <= 0:
        return 0.0
    between = 0.0
    for c in np.unique(classes_N):
        rows = centred[classes_N == c]
        between += len(rows) * float((rows.mean(0) ** 2).sum())
    return between / total


def ground_truth_table(model: str, heads_NLHE: np.ndarray, embedding_NE: np.ndarray, layers: Sequence[int],
                       factors: Mapping[str, np.ndarray]) -> pl.DataFrame:
    """The ``ground_truth`` rows of one model: every (layer, head, factor)."""
    norm_N = np.linalg.norm(np.asarray(embedding_NE, np.float64), axis=-1)
    x_NLHE = np.asarray(heads_NLHE, np.float64) / norm_N[:, None, None, None]
    rows = []
    for li, layer in enumerate(layers):
        for h in range(x_NLHE.shape[2]):
            shares = {f: variance_share(x_NLHE[:, li, h], labels) for f, labels in factors.items()}
            total = sum(shares.values())
            for f, s in shares.items():
                rows.append({"model": model, "layer": int(layer), "head": h, "factor": f,
                             "variance_share": s, "selectivity": s / total if total > 0 else 0.0})
    return pl.DataFrame(rows, schema=GROUND_TRUTH_SCHEMA)


def probe_factors(ground_truth: pl.DataFrame) -> pl.DataFrame:
    """One row per (model, layer, head): its probe factor, that factor's variance share and selectivity."""
    return (
        ground_truth.sort(["model", "layer", "head", "variance_share"], descending=[False, False, False, True])
        .group_by(["model", "layer", "head"], maintain_order=True)
        .first()
        .rename({"factor": "probe_factor"})
    )


def read_any_probe_labels(folder) -> dict[str, dict[str, int]]:
    """file -> {factor: value index} of a toy (``toy:N``) or world-v3 (``plant:N``) probe folder, told by its columns."""
    path = Path(folder) / LABELS_FILE
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f), [])
        if tuple(header[1:]) == plant_world.FACTOR_NAMES:
            with open(path, newline="", encoding="utf-8") as f:
                return {r["file"]: {k: plant_world.factor_index(k, r[k]) for k in plant_world.FACTOR_NAMES}
                        for r in csv.DictReader(f)}
    return read_probe_labels(folder)


def ground_truth_from_decomposition(model: str, artifact, probe_folder) -> pl.DataFrame:
    """The ``ground_truth`` rows from a decomposed toy probe set (its factors read from ``labels.csv``)."""

    labels = read_any_probe_labels(probe_folder)
    ids = artifact.ids()
    missing = [i for i in ids if i not in labels]
    if missing:
        raise ValueError(f"{len(missing)} decomposed images have no row in {probe_folder}/labels.csv (first: {missing[0]})")
    factors = {f: np.array([labels[i][f] for i in ids], np.int64) for f in next(iter(labels.values()))}
    shards = [artifact.load_shard(name) for name in artifact.shard_names]
    heads_NLHE = np.concatenate([s["heads"] for s in shards])
    embedding_NE = np.concatenate([s["embedding"] for s in shards])
    return ground_truth_table(model, heads_NLHE, embedding_NE, artifact.layers, factors)
