"""Each head's top and bottom probe images, from a decomposition artifact (no second model pass).

A head's *direction* ``k`` is the k-th principal component of its centred direct contribution over the probe
images, each image's term divided by the norm of its embedding (as TextSpan normalises it, see
:mod:`ccs_dist.spans.textspan`). The first component is the direction of largest variance: the one TextSpan's first
span is chosen to explain. An image's *projection* is ``(x_i - mean) . u_k``; the ``n_images`` largest are the
head's top images (``sign = +1``), the ``n_images`` most negative its bottom images (``sign = -1``). A principal
component has no sign of its own: ``u_k`` is oriented so that the image of largest ``|projection|`` lies on the
``+`` side, so "top" holds the head's most extreme image.

Two streaming reads of the shards (moments, then projections); memory is ``G x E x E`` float64 per chunk of
heads plus ``N x G x K`` projections.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import torch

from ccs_dist.decomposition.image_set import DecompositionArtifact
from ccs_dist.spans.textspan import stream_moments

HEAD_IMAGES_SCHEMA = {"model": pl.String, "layer": pl.Int64, "head": pl.Int64, "direction": pl.Int64, "rank": pl.Int64,
                      "sign": pl.Int64, "image_id": pl.String, "projection": pl.Float64}


@dataclass(frozen=True)
class HeadImagesConfig:
    n_images: int = 5  # top images and bottom images per head and direction
    n_directions: int = 1  # principal components per head
    max_moment_bytes: int = 1 << 30  # Gram matrices held at once; heads are processed in chunks


def principal_directions(artifact: DecompositionArtifact, n_directions: int, max_moment_bytes: int = 1 << 30) -> tuple[np.ndarray, np.ndarray]:
    """(directions [G, K, E], means [G, E]) of every head: top-K eigenvectors of its centred covariance."""
    n_heads = len(artifact.layers) * int(artifact.manifest["num_heads"])
    dim = int(artifact.manifest["embed_dim"])
    chunk = max(1, min(n_heads, max_moment_bytes // (dim * dim * 8)))
    k = min(n_directions, dim)
    dirs_GRE = np.zeros((n_heads, k, dim))
    mean_GE = np.zeros((n_heads, dim))
    for lo in range(0, n_heads, chunk):
        moments, _ = stream_moments(artifact, slice(lo, lo + chunk))
        _, vecs_GEE = torch.linalg.eigh(moments.covariance())  # ascending eigenvalues
        top = vecs_GEE[:, :, -k:].flip(-1).transpose(1, 2)  # [g, K, E], largest first
        dirs_GRE[lo : lo + top.shape[0]] = top.numpy()
        mean_GE[lo : lo + top.shape[0]] = (moments.sum_GE / max(moments.count, 1)).numpy()
    return dirs_GRE, mean_GE


def projections(artifact: DecompositionArtifact, dirs_GRE: np.ndarray, mean_GE: np.ndarray, batch: int = 256) -> np.ndarray:
    """[N, G, R] projections of every image's normalised, centred head terms onto the head directions."""
    n_layers, n_heads, dim = len(artifact.layers), int(artifact.manifest["num_heads"]), int(artifact.manifest["embed_dim"])
    out = []
    for name in artifact.shard_names:
        shard = artifact.load_shard(name)  # memory-mapped: read in batches of images
        for lo in range(0, shard["heads"].shape[0], batch):
            x_NGE = np.asarray(shard["heads"][lo : lo + batch], dtype=np.float64)
            x_NGE = x_NGE.reshape(x_NGE.shape[0], n_layers * n_heads, dim)
            norm_N = np.linalg.norm(np.asarray(shard["embedding"][lo : lo + batch], dtype=np.float64), axis=-1)
            out.append(np.einsum("nge,gre->ngr", x_NGE / norm_N[:, None, None] - mean_GE[None], dirs_GRE))
    return np.concatenate(out, axis=0)


def head_images_table(model_key: str, artifact: DecompositionArtifact, config: HeadImagesConfig = HeadImagesConfig()) -> pl.DataFrame:
    """One row per (layer, head, direction, sign, rank): the image id and its projection (see the module doc).

    ``rank`` 0 is the most extreme image on its side; ``direction`` 0 is the first principal component."""
    dirs_GRE, mean_GE = principal_directions(artifact, config.n_directions, config.max_moment_bytes)
    proj_NGR = projections(artifact, dirs_GRE, mean_GE)
    ids = artifact.ids()
    n_heads = int(artifact.manifest["num_heads"])
    n = min(config.n_images, proj_NGR.shape[0])
    rows = []
    for g in range(proj_NGR.shape[1]):
        layer, head = artifact.layers[g // n_heads], g % n_heads
        for k in range(proj_NGR.shape[2]):
            p_N = proj_NGR[:, g, k]
            if p_N.max() < -p_N.min():  # orient: the most extreme image on the + side
                p_N = -p_N
            order = np.argsort(-p_N, kind="stable")
            for sign, picked in ((1, order[:n]), (-1, order[::-1][:n])):
                for rank, i in enumerate(picked):
                    rows.append((model_key, layer, head, k, rank, sign, ids[i], float(p_N[i])))
    return pl.DataFrame(rows, schema=HEAD_IMAGES_SCHEMA, orient="row")
