"""Per-head moments (count, sum, Gram) that add up exactly, and their on-disk form in a decomposition.

TextSpan needs only these three statistics of each head's (norm-divided) terms, so a decomposition can keep
them instead of every image's heads (``DecomposeConfig(keep="moments")``), and moments computed on
separate parts of an image set merge into those of the whole: counts, sums and Gram matrices add.

A moments-only artifact stores one set of moments per stability bucket (images dealt into buckets by
:func:`ccs_dist.decomposition.moments.bucket_of_images` over the image set's indices), so span stability needs no
second pass either; the full-data moments are the merge of the buckets.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ccs_dist.core.errors import UserError
from ccs_dist.artifacts.store import atomic_save_npy

log = logging.getLogger(__name__)

SUM_FILE, GRAM_FILE, DEAL_FILE = "moments-sum.npy", "moments-gram.npy", "moments-bucket-of-image.npy"


class HeadMoments:
    """Streaming count, sum [G, E] and Gram XᵀX [G, E, E] (float64) of G heads' contributions."""

    def __init__(self, num_heads: int, dim: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64):
        self.count = 0
        self.sum_GE = torch.zeros(num_heads, dim, dtype=dtype, device=device)
        self.gram_GEE = torch.zeros(num_heads, dim, dim, dtype=dtype, device=device)
        self._eigh: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def num_heads(self) -> int:
        return self.sum_GE.shape[0]

    @property
    def dim(self) -> int:
        return self.sum_GE.shape[1]

    def update(self, x_GNE: torch.Tensor | np.ndarray) -> None:
        # Move in the source dtype, widen on the device: the host neither converts nor sends twice the bytes.
        x = torch.as_tensor(x_GNE).to(self.sum_GE.device).to(self.sum_GE.dtype)
        if x.dim() != 3 or x.shape[0] != self.num_heads or x.shape[2] != self.dim:
            raise ValueError(f"expected [G={self.num_heads}, N, E={self.dim}], got {tuple(x.shape)}")
        self.count += x.shape[1]
        self.sum_GE += x.sum(1)
        self.gram_GEE += x.transpose(1, 2) @ x
        self._eigh = None

    def eigh(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues [G, E] (ascending) and eigenvectors [G, E, E] of the Gram matrices, computed once: the
        spans and the stability basis both need them, and they dominate TextSpan's time."""
        if getattr(self, "_eigh", None) is None:
            self._eigh = torch.linalg.eigh(self.gram_GEE)
        return self._eigh

    @classmethod
    def from_data(cls, x_GNE: torch.Tensor | np.ndarray, device: torch.device | str = "cpu") -> HeadMoments:
        x = torch.as_tensor(x_GNE)
        moments = cls(x.shape[0], x.shape[2], device=device)
        moments.update(x)
        return moments

    def select(self, index: Sequence[int] | slice, device: torch.device | str | None = None) -> HeadMoments:
        """The statistics of some heads (on ``device`` if given)."""
        out = HeadMoments.__new__(HeadMoments)
        out.count, out.sum_GE, out.gram_GEE = self.count, self.sum_GE[index], self.gram_GEE[index]
        cached = getattr(self, "_eigh", None)
        out._eigh = None if cached is None else (cached[0][index], cached[1][index])
        if device is not None:
            out.sum_GE, out.gram_GEE = out.sum_GE.to(device), out.gram_GEE.to(device)
            out._eigh = None if cached is None else (out._eigh[0].to(device), out._eigh[1].to(device))
        return out

    def project(self, basis_GEX: torch.Tensor) -> HeadMoments:
        """The statistics of X W for per-head orthonormal bases W [G, E, X] (the coordinates of X in span(W))."""
        out = HeadMoments.__new__(HeadMoments)
        w = basis_GEX.to(self.gram_GEE.device, self.gram_GEE.dtype)
        out.count = self.count
        out.sum_GE = (self.sum_GE[:, None, :] @ w)[:, 0]
        out.gram_GEE = w.transpose(1, 2) @ self.gram_GEE @ w
        return out

    def covariance(self) -> torch.Tensor:
        """Centred covariance [G, E, E] with the n - 1 denominator."""
        n = self.count
        mean = self.sum_GE / n
        return (self.gram_GEE - n * mean[:, :, None] * mean[:, None, :]) / max(n - 1, 1)


def bucket_of_images(n_images: int, n_buckets: int, seed: int) -> np.ndarray:
    """Bucket [N] of every image: a seeded permutation dealt round-robin, so buckets differ in size by <= 1."""
    return np.random.default_rng(seed).permutation(n_images) % n_buckets


def usable_buckets(n_images: int, buckets: int) -> int:
    """Buckets actually used: at most one per 4 images, so that a half-sample has >= 2 images per bucket pair."""
    return min(buckets, n_images // 4)


def merge_moments(parts: Sequence[HeadMoments]) -> HeadMoments:
    """The moments of the union of disjoint image sets from each set's moments (added in the given order).

    Exact up to float64 addition: merging the per-shard moments of a one-pass run, in shard order, gives
    bit-identical moments to that run (it adds the same per-shard terms in the same order).
    """
    if not parts:
        raise ValueError("merge_moments needs at least one set of moments")
    first = parts[0]
    for p in parts[1:]:
        if p.sum_GE.shape != first.sum_GE.shape:
            raise ValueError(f"cannot merge moments of shapes {tuple(first.sum_GE.shape)} and {tuple(p.sum_GE.shape)}")
    out = HeadMoments.__new__(HeadMoments)
    out.count = first.count
    out.sum_GE, out.gram_GEE = first.sum_GE.clone(), first.gram_GEE.clone()
    for p in parts[1:]:
        out.count += p.count
        out.sum_GE += p.sum_GE.to(out.sum_GE.device)
        out.gram_GEE += p.gram_GEE.to(out.gram_GEE.device)
    return out


def normalised_heads_GNE(heads_NGE: torch.Tensor, embedding_NE: torch.Tensor) -> torch.Tensor:
    """Each image's head terms divided by the norm of its embedding (as the reference does), in float32, [G, N, E]."""
    norms_N = embedding_NE.float().norm(dim=-1)
    return (heads_NGE.float() / norms_N[:, None, None]).transpose(0, 1)


class BucketMoments:
    """Moments of G heads accumulated per bucket; ``bucket_of_index`` maps an image-set index to its bucket."""

    def __init__(self, num_heads: int, dim: int, bucket_of_index: np.ndarray, device: torch.device | str):
        self.bucket_of_index = torch.as_tensor(np.asarray(bucket_of_index, dtype=np.int64))
        n_buckets = int(self.bucket_of_index.max()) + 1 if len(self.bucket_of_index) else 1
        self.buckets = [HeadMoments(num_heads, dim, device=device) for _ in range(n_buckets)]

    def update(self, heads_NGE: torch.Tensor, embedding_NE: torch.Tensor, indices: Sequence[int]) -> None:
        x_GNE = normalised_heads_GNE(heads_NGE, embedding_NE)
        if len(self.buckets) == 1:
            self.buckets[0].update(x_GNE)
            return
        b_N = self.bucket_of_index[torch.as_tensor(list(indices), dtype=torch.int64)]  # on the host: no device sync
        for b, moments in enumerate(self.buckets):
            at_n = (b_N == b).nonzero()[:, 0]
            if len(at_n):
                moments.update(x_GNE.index_select(1, at_n.to(x_GNE.device)))

    def save(self, folder: Path, kept_indices: np.ndarray, prefix: str = "") -> dict:
        """Write the buckets' sums [K, G, E], Grams [K, G, E, E] and the deal of the kept images; -> manifest part.
        ``prefix``: one shard's moments beside its siblings' (merged by :func:`merge_shard_moments`)."""
        atomic_save_npy(folder / f"{prefix}{SUM_FILE}", torch.stack([m.sum_GE for m in self.buckets]).cpu().numpy())
        atomic_save_npy(folder / f"{prefix}{GRAM_FILE}", torch.stack([m.gram_GEE for m in self.buckets]).cpu().numpy())
        deal = self.bucket_of_index[torch.as_tensor(kept_indices, dtype=torch.int64)].numpy()
        atomic_save_npy(folder / f"{prefix}{DEAL_FILE}", deal)
        return {"moment_counts": [m.count for m in self.buckets]}


def merge_shard_moments(folder: Path, parts: Sequence[tuple[str, list[int]]]) -> dict:
    """The moments of a sharded decomposition: each shard's (``prefix``, bucket counts) in shard order,
    merged bucket by bucket with :func:`merge_moments` into the unprefixed files (the shard files are
    removed); -> manifest part, as :meth:`BucketMoments.save` gives it."""
    sums = [np.load(folder / f"{prefix}{SUM_FILE}", mmap_mode="r") for prefix, _ in parts]
    grams = [np.load(folder / f"{prefix}{GRAM_FILE}", mmap_mode="r") for prefix, _ in parts]
    merged_sums, merged_grams, counts = [], [], []
    for k in range(len(parts[0][1])):
        shard_moments = []
        for (_, shard_counts), bucket_sums, bucket_grams in zip(parts, sums, grams):  # [buckets, G, E(, E)]
            m = HeadMoments.__new__(HeadMoments)
            m.count = int(shard_counts[k])
            m.sum_GE, m.gram_GEE = torch.from_numpy(np.array(bucket_sums[k])), torch.from_numpy(np.array(bucket_grams[k]))
            shard_moments.append(m)
        merged = merge_moments(shard_moments)
        merged_sums.append(merged.sum_GE)
        merged_grams.append(merged.gram_GEE)
        counts.append(merged.count)
    atomic_save_npy(folder / SUM_FILE, torch.stack(merged_sums).numpy())
    atomic_save_npy(folder / GRAM_FILE, torch.stack(merged_grams).numpy())
    atomic_save_npy(folder / DEAL_FILE, np.concatenate([np.load(folder / f"{prefix}{DEAL_FILE}") for prefix, _ in parts]))
    del sums, grams
    for prefix, _ in parts:
        for name in (SUM_FILE, GRAM_FILE, DEAL_FILE):
            (folder / f"{prefix}{name}").unlink(missing_ok=True)
    return {"moment_counts": counts}


def load_bucket_moments(artifact, heads: slice, device: torch.device | str) -> list[HeadMoments]:
    """The stored per-bucket moments of heads ``heads`` (memory-mapped reads of just those heads)."""
    sums = np.load(artifact.path / SUM_FILE, mmap_mode="r")
    grams = np.load(artifact.path / GRAM_FILE, mmap_mode="r")
    out = []
    for k, count in enumerate(artifact.manifest["moment_counts"]):
        m = HeadMoments.__new__(HeadMoments)
        m.count = int(count)
        m.sum_GE = torch.from_numpy(np.array(sums[k, heads])).to(device)
        m.gram_GEE = torch.from_numpy(np.array(grams[k, heads])).to(device)
        out.append(m)
    return out


def stored_moments(
    artifact, heads: slice, bucket_N: np.ndarray | None, device: torch.device | str, normalise: bool
) -> tuple[HeadMoments, list[HeadMoments]]:
    """:func:`ccs_dist.spans.textspan.stream_moments` for a moments-only artifact: (all images, per bucket)."""
    if not normalise:
        raise UserError(f"{artifact.path} keeps only norm-divided moments: decompose again with keep='heads' for raw head terms")
    buckets = load_bucket_moments(artifact, heads, device)
    full = merge_moments(buckets)
    if bucket_N is None or not len(bucket_N):
        return full, []
    wanted = int(bucket_N.max()) + 1
    if len(buckets) == 1:
        log.warning("%s kept moments without stability buckets: stability columns left empty", artifact.path)
        return full, []
    stored_deal = np.load(artifact.path / DEAL_FILE)
    # With skipped images the stored deal (over the image set's indices) cannot equal one over the kept images.
    same_deal = np.array_equal(stored_deal, bucket_N) or bool(artifact.manifest.get("skipped"))
    if wanted != len(buckets) or not same_deal:
        raise UserError(
            f"{artifact.path} kept moments for {len(buckets)} stability buckets dealt differently from the {wanted} asked "
            "for: use the decomposition's stability buckets and seed, or decompose again with keep='heads'"
        )
    return full, buckets
