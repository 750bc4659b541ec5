"""TextSpan (Gandelsman et al.): the m texts that span a head's output, greedily, with the variance each explains.

The algorithm, exactly as in the reference code, for a head's contributions X [N, E] and texts T [T, E]:
project the texts onto the top-``rank`` right singular directions of the uncentred X; centre X; then m times:
pick the text whose projection ``X t`` has the largest variance over images, record it, and project its
direction out of both X and the remaining texts.

Everything the loop needs is a function of three sufficient statistics of X: the count N, the sum and the
Gram matrix XᵀX [E, E]. The variance of ``X t`` is ``tᵀ C t`` with C the centred covariance, projecting a unit
direction ``u`` out of X turns C into ``(I - uuᵀ) C (I - uuᵀ)``, and, because every text lies in the rank-r
span V after the first step, the whole loop runs in r coordinates: A = T Vᵀ [T, r], C_r = V C Vᵀ [r, r].
So the statistics stream from disk shard by shard (memory flat in N), all heads run as one batch, and each
iteration costs T·r² instead of N·T·E. Computed in float64.

``variance`` in the results is the fraction of the head's total (centred) variance removed by each step.

Rank. A head's term lies in an affine subspace of about K + 3 dimensions (head dimension K, plus the
out-projection bias and the ``ln_post`` mean/bias directions), far fewer than E. Singular directions beyond
that are rounding noise, yet the reference projects texts onto them and deflates through them, so the
spans after the first can flip under a 1e-7 perturbation of the data. ``rank_policy="numerical"`` (the
default) therefore uses ``min(rank, numerical rank)`` per head (see :func:`numerical_rank`);
``rank_policy="reference"`` keeps the reference algorithm exactly (``min(rank, N)``).
Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ccs_dist.core.errors import UserError
from ccs_dist.decomposition.moments import HeadMoments, normalised_heads_GNE
from ccs_dist.decomposition.moments import stored_moments

log = logging.getLogger(__name__)

RankPolicy = Literal["numerical", "reference"]
RANK_POLICIES: tuple[str, ...] = ("numerical", "reference")
# Unit roundoff of the precisions head terms can be computed in (2^-24 for fp32, 2^-8 for bf16).
UNIT_ROUNDOFF = {"fp32": 2.0**-24, "bf16": 2.0**-8, "fp64": 2.0**-53}


@dataclass(frozen=True)
class SpanResult:
    """The m spanning texts of one head, in the order chosen, and the rank of the subspace used."""

    texts: tuple[str, ...]
    indices: tuple[int, ...]
    variances: tuple[float, ...]  # fraction of the head's total variance explained by each text
    rank: int = 0  # effective rank: the number of right singular directions the texts were projected onto


def numerical_rank(moments: HeadMoments, precision: str = "fp32") -> torch.Tensor:
    """Numerical rank [G] of each head's data X [N, E] from its Gram matrix, for data computed in ``precision``.

    A singular value counts when ``sigma_i > sqrt(E) * u * ||X||_F``, u the unit roundoff of ``precision``.
    Why: if every entry of X carries a relative rounding error of at most e, the error matrix has
    ``||dX||_2 <= ||dX||_F <= e * ||X||_F``, and by Weyl's inequality no singular value of a direction the
    exact data lacks can exceed that. Each coordinate of a head term is a sum over the D ~ E residual
    coordinates (the out-projection, then ``proj``), whose rounding error grows like ``sqrt(D) * u``
    (random-walk model, Higham, *Accuracy and Stability of Numerical Algorithms*, sec. 2.8), hence
    ``e = sqrt(E) * u``. Unlike numpy's ``matrix_rank`` rule (``sigma_max * max(N, E) * eps``) it does not
    grow with N: noise and signal singular values both scale like ``sqrt(N)``.
    Measured on random-init ViT-B-32 (fp32, 160 images, E = 512): the noise floor is ~0.55 u ||X||_F and
    the smallest real direction (the 65th) ~1500 u ||X||_F; the threshold (~22.6 u ||X||_F) sits 40x above
    the first and 67x below the second. Eigenvalues of the float64 Gram are accurate to ~1e-16 sigma_max^2,
    i.e. singular values to ~1e-8 sigma_max, far below the threshold.
    """
    evals = moments.eigh()[0] if getattr(moments, "_eigh", None) is not None else torch.linalg.eigvalsh(moments.gram_GEE)
    return _rank_from_eigenvalues(evals, precision)


def numerical_basis(moments: HeadMoments, precision: str = "fp32") -> torch.Tensor:
    """Orthonormal bases [G, E, X] of every head's data: its top X right singular directions, X the largest
    numerical rank among the heads. Any subset of the images lies in the same span (up to rounding noise)."""
    evals, evecs = moments.eigh()
    d = int(_rank_from_eigenvalues(evals, precision).max())
    return evecs[..., -d:]


def _rank_from_eigenvalues(eig_GE: torch.Tensor, precision: str, embed_dim: int | None = None) -> torch.Tensor:
    """:func:`numerical_rank` from the eigenvalues [G, E] of the Gram matrices (sigma^2, any order); ``embed_dim``:
    E when the Gram matrices are expressed in a smaller basis (see :meth:`HeadMoments.project`)."""
    if precision not in UNIT_ROUNDOFF:
        raise UserError(f"unknown precision {precision!r} for the rank threshold: use one of {', '.join(UNIT_ROUNDOFF)}")
    eig_GE = eig_GE.clamp_min(0)
    e = embed_dim or eig_GE.shape[-1]
    tol2_G = eig_GE.sum(-1) * e * UNIT_ROUNDOFF[precision] ** 2  # (sqrt(E) u ||X||_F)^2; trace = ||X||_F^2
    return (eig_GE > tol2_G[:, None]).sum(-1).clamp_min(1)


def _validate(moments: HeadMoments, n_texts: int, text_dim: int, m: int, rank: int, embed_dim: int) -> None:
    if moments.count < 2:
        raise UserError(f"TextSpan needs at least 2 images per head, got {moments.count}: use more probe images")
    if text_dim != embed_dim:
        raise UserError(f"text embeddings have dimension {text_dim} but head outputs {embed_dim}: embed the texts with the same model")
    if not 1 <= rank <= embed_dim:
        raise UserError(f"rank={rank} is out of range: it must be between 1 and the embedding size E={embed_dim}")
    if not 1 <= m <= n_texts:
        raise UserError(f"m={m} spans per head cannot be drawn from a pool of {n_texts} texts: use 1 <= m <= {n_texts}")


def _project_texts(text_TE: torch.Tensor, v_GER: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """A = T V in float64, [G, T, R], converting the texts chunk by chunk (a huge pool stays in its dtype)."""
    out = torch.empty(v_GER.shape[0], text_TE.shape[0], v_GER.shape[2], dtype=v_GER.dtype, device=v_GER.device)
    for lo in range(0, text_TE.shape[0], chunk):
        out[:, lo : lo + chunk] = text_TE[lo : lo + chunk].to(v_GER.device, v_GER.dtype) @ v_GER
    return out


def _span_in_subspace(
    moments: HeadMoments, text_TE: torch.Tensor, m: int, rank: int, rank_policy: RankPolicy, precision: str,
    basis_GEX: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The greedy loop for a group of heads: -> (text indices [G, m], explained fractions [G, m], ranks [G]).

    With the numerical policy head g keeps its top ``ranks_G[g]`` directions: the columns beyond are zeroed,
    which adds exact zeros to every sum, so it equals running each head at its own rank.
    ``basis_GEX``: the moments are in the coordinates of these bases (:meth:`HeadMoments.project`); the singular
    directions found there are mapped back to E for the texts.
    """
    r = min(rank, moments.count, moments.dim)  # the reference's SVD has min(N, E) right singular vectors
    evals, evecs = moments.eigh()  # ascending eigenvalues of XᵀX = right singular vectors of X
    v_GXR = evecs[..., -r:]
    ranks_G = torch.full((moments.num_heads,), r, device=v_GXR.device)
    if rank_policy == "numerical":
        embed_dim = basis_GEX.shape[1] if basis_GEX is not None else None
        ranks_G = _rank_from_eigenvalues(evals, precision, embed_dim).clamp(max=r)
        keep_GR = torch.arange(r, 0, -1, device=v_GXR.device)[None, :] <= ranks_G.to(v_GXR.device)[:, None]
        v_GXR = v_GXR * keep_GR[:, None, :].to(v_GXR.dtype)  # column j is the (r - j)-th largest direction
    cov_GXX = moments.covariance()
    total_G = cov_GXX.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(torch.finfo(cov_GXX.dtype).tiny)
    c_GRR = v_GXR.transpose(1, 2) @ cov_GXX @ v_GXR
    v_GER = v_GXR if basis_GEX is None else basis_GEX.to(v_GXR.device, v_GXR.dtype) @ v_GXR
    a_GTR = _project_texts(text_TE, v_GER)  # texts in subspace coordinates
    chosen, explained = [], []
    g_idx = torch.arange(moments.num_heads, device=v_GER.device)
    for _ in range(m):
        var_GT = ((a_GTR @ c_GRR) * a_GTR).sum(-1)
        top_G = var_GT.argmax(-1)
        a_GR = a_GTR[g_idx, top_G]
        norm = a_GR.norm(dim=-1, keepdim=True)
        u_GR = torch.where(norm > 0, a_GR / norm.clamp_min(1e-300), torch.zeros_like(a_GR))
        cu_GR = (c_GRR @ u_GR[..., None])[..., 0]
        explained.append((u_GR * cu_GR).sum(-1) / total_G)
        chosen.append(top_G)
        # Project u out of the data (its covariance) and out of every text.
        ucu = (u_GR * cu_GR).sum(-1)[:, None, None]
        c_GRR = (
            c_GRR
            - u_GR[:, :, None] * cu_GR[:, None, :]
            - cu_GR[:, :, None] * u_GR[:, None, :]
            + ucu * u_GR[:, :, None] * u_GR[:, None, :]
        )
        a_GTR = a_GTR - (a_GTR @ u_GR[..., None]) * u_GR[:, None, :]
    return torch.stack(chosen, 1), torch.stack(explained, 1), ranks_G


def textspan_heads(
    moments: HeadMoments,
    text_emb: np.ndarray | torch.Tensor,
    texts: Sequence[str],
    m: int = 5,
    rank: int = 80,
    device: torch.device | str | None = None,
    max_chunk_bytes: int = 1 << 30,
    rank_policy: RankPolicy = "numerical",
    precision: str = "fp32",
    basis_GEX: torch.Tensor | None = None,
) -> list[SpanResult]:
    """TextSpan for every head in ``moments`` at once (GPU when ``device`` is CUDA): one result per head.

    ``rank_policy``: ``numerical`` uses ``min(rank, numerical_rank(head, precision))`` per head (``precision``:
    what the head terms were computed in); ``reference`` uses ``min(rank, N)`` as the reference code does.
    ``basis_GEX``: ``moments`` are projected onto these orthonormal bases (:func:`numerical_basis`), which must
    hold the data; the eigen-decompositions then cost D^3 instead of E^3 (the span-stability resamples).
    """
    text = torch.as_tensor(np.asarray(text_emb) if not isinstance(text_emb, torch.Tensor) else text_emb)
    if text.dim() != 2 or text.shape[0] != len(texts):
        raise UserError(f"text embeddings have shape {tuple(text.shape)} for {len(texts)} texts: give one row per text")
    _validate(moments, len(texts), text.shape[1], m, rank, basis_GEX.shape[1] if basis_GEX is not None else moments.dim)
    if rank_policy not in RANK_POLICIES:
        raise UserError(f"unknown rank_policy {rank_policy!r}: use one of {', '.join(RANK_POLICIES)}")
    dev = torch.device(device) if device is not None else moments.sum_GE.device
    text = text.to(dev)
    r = min(rank, moments.count)
    per_head = text.shape[0] * r * 8 * 3  # a_GTR, its product with C_r and the variance temporaries
    chunk = max(1, int(max_chunk_bytes // max(per_head, 1)))
    if moments.sum_GE.device == dev and basis_GEX is None:
        moments.eigh()  # all heads in one call, kept on ``moments`` for the caller (e.g. the stability basis)
    results: list[SpanResult] = []
    for lo in range(0, moments.num_heads, chunk):
        part = moments.select(slice(lo, lo + chunk), device=dev)
        basis = basis_GEX[lo : lo + chunk].to(dev) if basis_GEX is not None else None
        idx_GM, frac_GM, ranks_G = _span_in_subspace(part, text, m, rank, rank_policy, precision, basis)
        for idx, frac, rk in zip(idx_GM.cpu().tolist(), frac_GM.cpu().tolist(), ranks_G.cpu().tolist()):
            results.append(SpanResult(tuple(texts[i] for i in idx), tuple(idx), tuple(frac), int(rk)))
    return results


def textspan(
    head_out: np.ndarray | torch.Tensor,
    text_emb: np.ndarray | torch.Tensor,
    texts: Sequence[str],
    m: int = 5,
    rank: int = 80,
    device: torch.device | str | None = None,
    rank_policy: RankPolicy = "numerical",
    precision: str = "fp32",
) -> SpanResult:
    """TextSpan for one head: ``head_out`` [N, E] (already divided by the embedding norms), ``text_emb`` [T, E]."""
    x = torch.as_tensor(np.asarray(head_out) if not isinstance(head_out, torch.Tensor) else head_out)
    if x.dim() != 2:
        raise UserError(f"head_out must be [N, E], got shape {tuple(x.shape)}")
    moments = HeadMoments.from_data(x[None], device=device or "cpu")
    return textspan_heads(moments, text_emb, texts, m=m, rank=rank, device=device, rank_policy=rank_policy, precision=precision)[0]


def moments_from_artifact(artifact, device: torch.device | str = "cpu", normalise: bool = True) -> HeadMoments:
    """Stream a decomposition artifact into per-head moments, G = L*H layer-major (L0.H0, L0.H1, ...).

    ``normalise`` divides each image's terms by the norm of its embedding, as the reference does.
    """
    return stream_moments(artifact, device=device, normalise=normalise)[0]


def stream_moments(
    artifact,
    heads: slice = slice(None),
    bucket_N: np.ndarray | None = None,
    device: torch.device | str = "cpu",
    normalise: bool = True,
) -> tuple[HeadMoments, list[HeadMoments]]:
    """One read of the artifact -> (moments of units ``heads`` over all images, the same per bucket). The unit axis
    is the L x H heads flattened, then the attention pooling's units (``artifact.pool_units``; SigLIP).

    ``bucket_N`` gives each image (in artifact order) a bucket 0..B-1; without it the bucket list is empty.
    The full-data moments are accumulated directly, not as a sum of the buckets, so they do not depend on B.
    A moments-only artifact (``keep="moments"``) returns its stored moments instead (:mod:`ccs_dist.decomposition.moments`).
    """
    manifest = artifact.manifest
    if manifest.get("keep") == "moments":

        return stored_moments(artifact, heads, bucket_N, device, normalise)
    n_layers, n_heads, dim = len(manifest["layers"]), int(manifest["num_heads"]), int(manifest["embed_dim"])
    n_trunk = n_layers * n_heads
    picked = range(n_trunk + len(manifest.get("pool_units", ())))[heads]
    trunk_picked = [g for g in picked if g < n_trunk]  # read only the units asked for (shards are memory-mapped)
    pool_picked = [g - n_trunk for g in picked if g >= n_trunk]
    full = HeadMoments(len(picked), dim, device=device)
    n_buckets = int(bucket_N.max()) + 1 if bucket_N is not None and len(bucket_N) else 0
    buckets = [HeadMoments(len(picked), dim, device=device) for _ in range(n_buckets)]
    seen = 0
    for name in artifact.shard_names:
        shard = artifact.load_shard(name)
        n = shard["heads"].shape[0]
        parts = [shard["heads"].reshape(n, n_trunk, dim)[:, trunk_picked]] if trunk_picked else []
        if pool_picked:
            parts.append(shard["pool"][:, pool_picked])
        x_NGE = torch.from_numpy(np.concatenate(parts, axis=1).astype(np.float32, copy=False))
        if normalise:
            x_GNE = normalised_heads_GNE(x_NGE, torch.from_numpy(np.array(shard["embedding"], dtype=np.float32)))
        else:
            x_GNE = x_NGE.transpose(0, 1)
        full.update(x_GNE)
        if n_buckets:
            b_N = torch.from_numpy(np.asarray(bucket_N[seen : seen + n]))
            for b, moments in enumerate(buckets):
                mask = b_N == b
                if mask.any():
                    moments.update(x_GNE[:, mask])
        seen += n
    return full, buckets


# --------------------------------------------------------------------------------------------------------
# FAISS-prefiltered variant for very large pools


@dataclass(frozen=True)
class PrefilterConfig:
    n_directions: int = 16  # principal directions of each head queried (each with both signs)
    k_per_direction: int = 256  # nearest texts per query


def textspan_heads_prefiltered(
    moments: HeadMoments,
    index,
    text_emb: np.ndarray,
    texts: Sequence[str],
    m: int = 5,
    rank: int = 80,
    config: PrefilterConfig = PrefilterConfig(),
    device: torch.device | str | None = None,
    rank_policy: RankPolicy = "numerical",
    precision: str = "fp32",
) -> list[SpanResult]:
    """TextSpan on candidates: texts nearest (inner product, via ``index``) to each head's top principal
    directions in both signs, then the exact algorithm on those candidates.

    The greedy loop treats texts independently (a text's projection only changes by the chosen directions),
    so whenever the exact answer's texts are among the candidates, this returns exactly that answer.
    """
    _validate(moments, len(texts), text_emb.shape[1], m, rank, moments.dim)
    r = min(rank, moments.count)
    _, evecs = moments.eigh()
    v_GER = evecs[..., -r:]
    c_GRR = v_GER.transpose(1, 2) @ moments.covariance() @ v_GER
    _, pc_GRR = torch.linalg.eigh(c_GRR)
    p = min(config.n_directions, r)
    dirs_GPE = (v_GER @ pc_GRR[..., -p:]).transpose(1, 2)  # top principal directions of the centred data, in E
    queries = torch.cat([dirs_GPE, -dirs_GPE], dim=1).reshape(-1, moments.dim).float().cpu().numpy()
    _, ids = index.search(np.ascontiguousarray(queries), config.k_per_direction)
    ids = ids.reshape(moments.num_heads, -1)
    results = []
    for g in range(moments.num_heads):
        cand = np.unique(ids[g][ids[g] >= 0])
        if len(cand) < m:
            raise UserError(f"the index returned {len(cand)} candidates, fewer than m={m}: raise k_per_direction")
        sub = textspan_heads(moments.select(slice(g, g + 1)), text_emb[cand], [texts[i] for i in cand], m=m, rank=rank,
                             device=device, rank_policy=rank_policy, precision=precision)[0]
        idx = tuple(int(cand[i]) for i in sub.indices)
        results.append(SpanResult(tuple(texts[i] for i in idx), idx, sub.variances, sub.rank))
    return results
