"""The image-side-only planting loss of ``ccs-plant`` (world v3): no text embedding, no pool line, no caption.

Each head of :data:`ccs_dist.toy.plan.PLAN` gets losses on its *direct contribution* as the decomposition
defines it (:func:`ccs_dist.toy.planted.capture_head_terms` / ``head_term``, divided by the embedding's norm),
computed from the image tower and the scene labels alone:

* read-out: a trainable linear probe (:class:`ReadOuts`, not part of the model) classifies the factor's value
  (or the hash ``(a + b) mod 4``) from the head's centred, batch-RMS-normalised contribution (cross-entropy);
* invariance: batches are contrast groups (4 scenes differing in one factor); the head's within-group
  variance in groups varying an unplanted factor, over all its within-group variance, is driven to 0;
* mixture shares: within-group variance of factor a over that of a and b is pulled to a's weight (squared error);
* hash and noise: the batch eta^2 of the factors that must not explain the head (both hashed factors; every
  factor for a noise head) is driven to 0, and a noise head's variance is kept at least
  :data:`NOISE_FLOOR` of the mean planted head's (detached), so it cannot vanish instead.

``free`` heads get nothing. The losses were fixed before training and are not tuned to any CCS measurement.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from ccs_dist.data.planted import world
from ccs_dist.toy.plan import PLAN, PlantedHead

NOISE_FLOOR = 0.5
EPS = 1e-12


def _probe_targets(head: PlantedHead) -> tuple[str, ...]:
    if head.kind == "hash":
        return ("hash",)
    return head.factors if head.kind in ("mono", "mixture") else ()


class ReadOuts(torch.nn.Module):
    """One linear probe [E -> 4] per (planted head, target): trained with the model, never saved with it."""

    def __init__(self, embed_dim: int, plan: tuple[PlantedHead, ...] = PLAN):
        super().__init__()
        self.probes = torch.nn.ModuleDict({
            f"{h.layer}_{h.head}_{t}": torch.nn.Linear(embed_dim, world.CARDINALITY) for h in plan for t in _probe_targets(h)})

    def logits(self, head: PlantedHead, target: str, z_BE: torch.Tensor) -> torch.Tensor:
        return self.probes[f"{head.layer}_{head.head}_{target}"](z_BE)


def batch_eta2(x_BE: torch.Tensor, labels_B: torch.Tensor, classes: int = world.CARDINALITY) -> torch.Tensor:
    """Differentiable eta^2 (between-class over total variance, summed over E) of ``labels_B`` on the rows."""
    centred = x_BE - x_BE.mean(0, keepdim=True)
    onehot_BC = F.one_hot(labels_B, classes).to(x_BE.dtype)
    counts_C = onehot_BC.sum(0)
    means_CE = (onehot_BC.T @ centred) / counts_C.clamp_min(1)[:, None]
    between = (counts_C * means_CE.pow(2).sum(-1)).sum()
    return between / centred.pow(2).sum().clamp_min(EPS)


def _within_group(x_BE: torch.Tensor, group_size: int) -> torch.Tensor:
    grouped = x_BE.view(-1, group_size, x_BE.shape[-1])
    return (grouped - grouped.mean(1, keepdim=True)).pow(2).sum(-1).mean(1)  # [G]


def plant_loss(terms: Mapping[int, torch.Tensor], embedding_BE: torch.Tensor, values_BF: torch.Tensor,
               varied_B: torch.Tensor, readouts: ReadOuts, plan: tuple[PlantedHead, ...] = PLAN,
               group_size: int = world.CARDINALITY) -> torch.Tensor:
    """The summed planting loss over the plan's heads, averaged per head (see the module docstring)."""
    scale_B1 = embedding_BE.detach().norm(dim=-1, keepdim=True)
    varied_G = varied_B.view(-1, group_size)[:, 0]
    xs = {(h.layer, h.head): terms[h.layer][:, h.head] / scale_B1 for h in plan if h.kind != "free"}
    planted_var = [xs[(h.layer, h.head)].var(0).sum() for h in plan if h.kind in ("mono", "mixture", "hash")]
    reference = torch.stack(planted_var).mean().detach() if planted_var else None
    per_head = []
    for h in plan:
        if h.kind == "free":
            continue
        x_BE = xs[(h.layer, h.head)]
        centred = x_BE - x_BE.mean(0, keepdim=True)
        z_BE = centred / centred.pow(2).sum(-1).mean().clamp_min(EPS).sqrt()
        idx = [world.FACTOR_NAMES.index(f) for f in h.factors]
        loss = x_BE.new_zeros(())
        if h.kind in ("mono", "mixture"):
            for f, i in zip(h.factors, idx):
                loss = loss + F.cross_entropy(readouts.logits(h, f, z_BE), values_BF[:, i])
        if h.kind == "hash":
            hashed = (values_BF[:, idx[0]] + values_BF[:, idx[1]]) % world.CARDINALITY
            loss = loss + F.cross_entropy(readouts.logits(h, "hash", z_BE), hashed)
            loss = loss + sum(batch_eta2(x_BE, values_BF[:, i]) for i in idx)
        if h.kind in ("mono", "mixture", "hash"):
            within_G = _within_group(x_BE, group_size)
            own = torch.zeros_like(varied_G, dtype=torch.bool)
            for i in idx:
                own |= varied_G == i
            if own.any() and (~own).any():
                v_own, v_other = within_G[own].mean(), within_G[~own].mean()
                loss = loss + v_other / (v_own + v_other + EPS)
            if h.kind == "mixture":
                a, b = (within_G[varied_G == i] for i in idx)
                if len(a) and len(b):
                    share = a.mean() / (a.mean() + b.mean() + EPS)
                    loss = loss + 10.0 * (share - h.weights[0]) ** 2
        if h.kind == "noise":
            loss = loss + sum(batch_eta2(x_BE, values_BF[:, i]) for i in range(len(world.FACTOR_NAMES)))
            if reference is not None:
                loss = loss + F.relu(1.0 - x_BE.var(0).sum() / (NOISE_FLOOR * reference + EPS))
        per_head.append(loss)
    return torch.stack(per_head).mean() if per_head else embedding_BE.new_zeros(())
