"""How much each attention head drives a prediction: attribution patching, direct effects, exact ablation.

The target is the zero-shot score ``y(x, t) = cos(image embedding of x, text embedding t)``, with ``t`` the
(unit) class text embedding of the image's class.

* **Attribution** (attribution patching, Dreyer et al. 2025, on heads): every head's output ``z`` is
  multiplied by a gate ``alpha_h = 1`` (``HeadAttention.controlled(keep_BH=...)``, one ``[B, H]`` leaf tensor per
  layer); ``R_h = dy/dalpha_h`` for every head of every layer comes from one backward pass. It is the
  first-order estimate of ``y(alpha_h = 1) - y(alpha_h = 0)``, i.e. of the exact zero-ablation effect.
* **Direct effect** (logit lens): a head's direct contribution ``c_h`` to the embedding (Gandelsman's
  decomposition, :func:`ccs_dist.decomposition.kernel.decompose`), dotted with the unit text embedding and divided by
  the norm of the image embedding: ``c_h . t / ||e||``. Over all terms of the decomposition these sum
  exactly to ``y``; the direct effect ignores everything that flows through later layers.
* **Exact ablation effect**: ``y(x) - y(x with h zeroed)`` from the masked engine (one pass per head).
* **Activation energy**: the L2 norm of a head's write to the CLS token (residual space), no target.

Faithfulness: deletion curves remove each image's top-1..k heads of a ranking (highest score first) and
track ``y``; the area under the curve (x = k / k_max in [0, 1]) is lower for a more faithful ranking.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ccs_dist.models import forward
from ccs_dist.models.loading import LoadedModel
from ccs_dist.models.similarity import target_score, text_rows_BE
from ccs_dist.decomposition.kernel import decompose
from ccs_dist.models.masked import encode_image_head_sets

__all__ = [
    "HeadScores",
    "attribute_heads",
    "auc",
    "deletion_curves",
    "direct_effects",
    "exact_ablation_effects",
    "head_gates",
    "order_by_score",
    "random_orders",
    "spearman",
    "target_score",
]


class Gates(list):
    """The gates ``[B, H]`` by layer (a list, for ``autograd.grad``), with each layer's capture."""

    def __init__(self, gates: list[torch.Tensor], captures: list):
        super().__init__(gates)
        self.captures = captures


@contextlib.contextmanager
def head_gates(loaded: LoadedModel, batch: int, record_cls: bool = False) -> Iterator[Gates]:
    """Install a gate ``alpha = 1`` ([B, H], requires grad) on every head of every layer; yield them by layer.

    The gates are set through each module's control context (``forward.head_mask`` skips all-ones masks on
    purpose). With ``record_cls`` each layer also captures its heads' CLS writes (``gates.captures[layer].cls_BHD``).
    """
    forward.check_tower(loaded)
    gates = [
        torch.ones(batch, loaded.num_heads, device=loaded.device, dtype=torch.float32, requires_grad=True)
        for _ in range(loaded.num_layers)
    ]
    modules = loaded.heads
    for module in modules:
        if module.control.keep_BH is not None:
            raise RuntimeError(f"{module.name}: a head mask is already set; nested gating is not supported")
    with contextlib.ExitStack() as stack:
        captures = [stack.enter_context(m.controlled(keep_BH=g, ablation="zero", capture_cls=record_cls))
                    for m, g in zip(modules, gates)]
        yield Gates(gates, captures)


@dataclass(frozen=True)
class HeadScores:
    """Scores of one batch. ``attribution_BLH``: dy/dalpha; ``energy_BLH``: ||CLS write||; ``y_B``: unpruned y."""

    y_B: torch.Tensor
    attribution_BLH: torch.Tensor
    energy_BLH: torch.Tensor
    embedding_BE: torch.Tensor


def attribute_heads(loaded: LoadedModel, images: torch.Tensor, text: torch.Tensor | np.ndarray) -> HeadScores:
    """Attribution ``dy/dalpha_h`` of every head for each image, from one forward and one backward pass.

    ``text``: [B, E] one target text embedding per image (e.g. its class), or [E] for all.
    Only the gates are differentiated (no parameter gradients are computed or stored).
    """
    images = images.to(loaded.device)
    B = images.shape[0]
    text_BE = text_rows_BE(loaded, text, B)
    with torch.enable_grad(), head_gates(loaded, B, record_cls=True) as gates:
        emb_BE = forward.encode_image(loaded, images)
        y_B = target_score(emb_BE, text_BE)
        # samples are independent (eval mode, per-sample LayerNorms), so d(sum y)/d gate[b] = dy_b / d gate[b]
        grads = torch.autograd.grad(y_B.sum(), gates)
        energy_BLH = torch.stack([c.cls_BHD.detach().float().norm(dim=-1) for c in gates.captures], dim=1)
    return HeadScores(
        y_B=y_B.detach(),
        attribution_BLH=torch.stack([g.float() for g in grads], dim=1),
        energy_BLH=energy_BLH,
        embedding_BE=emb_BE.detach().float(),
    )


@torch.no_grad()
def direct_effects(loaded: LoadedModel, images: torch.Tensor, text: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Direct (logit-lens) effect of every head: ``c_h . t_hat / ||e||``, [B, L, H].

    ``c_h`` is the head's term of the decomposition (summing with the rest to the embedding ``e``), ``t_hat``
    the unit text embedding. Since ``y = e . t_hat / ||e||``, the direct effects of all terms sum to ``y``.
    """

    images = images.to(loaded.device)
    text_BE = F.normalize(text_rows_BE(loaded, text, images.shape[0]), dim=-1)
    dec = decompose(loaded, images, layers=loaded.num_layers)
    norm_B = dec.embedding.float().norm(dim=-1)
    return torch.einsum("blhe,be->blh", dec.heads.float(), text_BE) / norm_B[:, None, None]


@torch.no_grad()
def exact_ablation_effects(
    loaded: LoadedModel,
    images: torch.Tensor,
    text: torch.Tensor | np.ndarray,
    heads: Sequence[tuple[int, int]] | None = None,
    max_batch: int | None = None,
) -> torch.Tensor:
    """Exact zero-ablation effect ``y(x) - y(x with h zeroed)`` of each head: [B, L, H] (NaN for heads not asked).

    One masked pass per head, grouped by layer so that each layer's passes share the layers below it
    (the masked engine runs the unpruned prefix once per call).
    """

    images = images.to(loaded.device)
    B, L, H = images.shape[0], loaded.num_layers, loaded.num_heads
    text_BE = text_rows_BE(loaded, text, B)
    pairs = [(l, h) for l in range(L) for h in range(H)] if heads is None else [(int(l), int(h)) for l, h in heads]
    with loaded.autocast():
        y0_B = target_score(forward.encode_image(loaded, images), text_BE)
    out = torch.full((B, L, H), float("nan"), device=y0_B.device)
    for layer in sorted({l for l, _ in pairs}):
        in_layer = sorted({h for l, h in pairs if l == layer})
        emb_SBE = encode_image_head_sets(loaded, images, [[(layer, h)] for h in in_layer], max_batch=max_batch)
        y_SB = target_score(emb_SBE, text_BE[None].expand(len(in_layer), -1, -1))
        out[:, layer, in_layer] = (y0_B[None] - y_SB).T
    return out


def order_by_score(score_BLH: torch.Tensor) -> torch.Tensor:
    """Per-image deletion order, highest score first: [B, G] flat head indices (``layer * H + head``).

    Ties are broken by the flat index (stable sort), so the order is deterministic.
    """
    B = score_BLH.shape[0]
    flat = score_BLH.reshape(B, -1).float()
    return torch.sort(-flat, dim=1, stable=True).indices


def random_orders(batch: int, n_heads: int, seed: int, offset: int = 0) -> torch.Tensor:
    """A random deletion order per image: [B, G]; image ``offset + b`` gets the same order in every batching."""
    out = torch.empty(batch, n_heads, dtype=torch.long)
    for b in range(batch):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + offset + b)
        out[b] = torch.randperm(n_heads, generator=g)
    return out


@torch.no_grad()
def deletion_curves(
    loaded: LoadedModel,
    images: torch.Tensor,
    text: torch.Tensor | np.ndarray,
    order_BG: torch.Tensor,
    ks: Sequence[int],
    max_batch: int | None = None,
) -> torch.Tensor:
    """``y`` after zeroing each image's first ``k`` heads of ``order_BG``, for every k of ``ks``: [B, J].

    ``k = 0`` is the unpruned model. All (image, k) pairs run as one per-sample-masked batch, chunked at
    ``max_batch`` samples (default 8 * B).
    """
    images = images.to(loaded.device)
    B, L, H = images.shape[0], loaded.num_layers, loaded.num_heads
    G = L * H
    text_BE = text_rows_BE(loaded, text, B)
    order_BG = torch.as_tensor(order_BG, dtype=torch.long)
    if order_BG.shape[0] != B or order_BG.shape[1] > G:
        raise ValueError(f"order has shape {tuple(order_BG.shape)}, expected [{B}, <= {G}]")
    ks = [int(k) for k in ks]
    if any(k < 0 or k > order_BG.shape[1] for k in ks):
        raise ValueError(f"deletion counts {ks} out of range 0..{order_BG.shape[1]}")
    # rank_BG[b, n] = position of head n in image b's order (heads missing from a partial order never go)
    rank_BG = torch.full((B, G), G + 1, dtype=torch.long)
    rank_BG.scatter_(1, order_BG, torch.arange(order_BG.shape[1]).expand(B, -1).contiguous())
    keep_JBG = torch.stack([(rank_BG >= k).float() for k in ks])  # sample (k, b)
    keep_ZLH = keep_JBG.view(len(ks) * B, L, H).to(loaded.device)
    images_Z = images.repeat(len(ks), 1, 1, 1)
    text_Z = text_BE.repeat(len(ks), 1)
    step = max(1, max_batch or 8 * B)
    ys = []
    for lo in range(0, keep_ZLH.shape[0], step):
        sl = slice(lo, lo + step)
        emb = forward.encode_image(loaded, images_Z[sl], keep_ZLH[sl])
        ys.append(target_score(emb, text_Z[sl]))
    return torch.cat(ys).view(len(ks), B).T.contiguous()


def auc(curve_J: np.ndarray | torch.Tensor, ks: Sequence[int]) -> np.ndarray:
    """Area under deletion curves (trapezoid, x = k / max(ks) in [0, 1]); curves on the last axis."""
    y = np.asarray(curve_J, dtype=np.float64)
    x = np.asarray(ks, dtype=np.float64)
    x = x / x.max() if x.max() > 0 else x
    return np.trapezoid(y, x, axis=-1) if hasattr(np, "trapezoid") else np.trapz(y, x, axis=-1)


def spearman(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Spearman's rank correlation of two equally long vectors (NaN pairs dropped; NaN if constant)."""
    from scipy.stats import spearmanr

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 2 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def spearman_by_layer(score_BLH: np.ndarray, exact_BLH: np.ndarray) -> dict[int | None, float]:
    """Rank correlation between a score and the exact effect over the (image, head) pairs of each layer.

    Key ``None``: over every (image, layer, head) at once.
    """
    out: dict[int | None, float] = {l: spearman(score_BLH[:, l], exact_BLH[:, l]) for l in range(score_BLH.shape[1])}
    out[None] = spearman(score_BLH, exact_BLH)
    return out


def global_order(rank_keys: Mapping[tuple[int, int], float], num_layers: int, num_heads: int, batch: int) -> torch.Tensor:
    """One order for every image from per-head scores (e.g. CCS): highest first, heads without a score last.

    Ties (and unscored heads) go by layer from the last, then head, so the order is deterministic.
    """
    score = torch.full((num_layers, num_heads), float("-inf"))
    for (l, h), v in rank_keys.items():
        score[l, h] = float(v)
    flat = score.reshape(-1)
    idx = sorted(range(flat.numel()), key=lambda n: (-flat[n].item(), -(n // num_heads), n % num_heads))
    return torch.tensor(idx, dtype=torch.long)[None].expand(batch, -1).contiguous()
