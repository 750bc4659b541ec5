"""Zero-shot classification with prompt ensembles, every head set scored from one pass over the data.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ccs_dist.data.datasets import ClassificationTask
from ccs_dist.evaluate.encode import HeadSetEncoder, embed_images, prompt_ensemble

log = logging.getLogger(__name__)


def topk_correct(logits_SBC: torch.Tensor, labels_B: torch.Tensor, k: int) -> torch.Tensor:
    """Number of samples whose label is among the top-k logits, per head set: [S] (int)."""
    k = min(k, logits_SBC.shape[-1])
    top_SBk = logits_SBC.topk(k, dim=-1).indices
    return (top_SBk == labels_B.to(top_SBk.device)[None, :, None]).any(-1).sum(-1)


def evaluate_zeroshot(
    loaded,
    task: ClassificationTask,
    head_sets: Sequence[Sequence[str]],
    loader: DataLoader,
    encoder: HeadSetEncoder | None = None,
    ablation: str = "zero",
) -> list[dict[str, float]]:
    """Top-1 / top-5 accuracy (percent) and sample count for each head set, in order.

    The classifier [C, E] is the prompt ensemble of the unpruned text tower, computed once.
    """
    classifier_CE = prompt_ensemble(loaded, task.classnames, task.templates)
    n_classes = len(task.classnames)
    correct1 = torch.zeros(len(head_sets), dtype=torch.long)
    correct5 = torch.zeros(len(head_sets), dtype=torch.long)
    n = 0
    for images, labels in tqdm(loader, desc=f"zero-shot {task.name}", leave=False, disable=None):
        labels = torch.as_tensor(labels)
        if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
            raise RuntimeError(f"{task.name}: label out of range 0..{n_classes - 1}")
        emb_SBE = embed_images(loaded, images, head_sets, encoder, ablation)
        logits_SBC = emb_SBE @ classifier_CE.T
        correct1 += topk_correct(logits_SBC, labels, 1).cpu()
        correct5 += topk_correct(logits_SBC, labels, 5).cpu()
        n += labels.numel()
    log.info("%s: %d images, %d classes, %d head sets", task.name, n, n_classes, len(head_sets))
    return [
        {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "n": float(n)}
        for c1, c5 in zip(correct1.tolist(), correct5.tolist())
    ]
