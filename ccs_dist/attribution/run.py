"""Attribution of every head over a zero-shot classification task, aggregated per class and per dataset.

Each image's target is its own class: ``y = cos(image embedding, prompt-ensemble embedding of its class)``.
Every image gets the gradient attribution, the direct effect and the activation energy of all heads; an
evenly spaced sample of ``samples`` images also gets the exact ablation effect of every head and the
deletion curves of every ranking (attribution, direct, energy, exact, ccs when a table is given, random
per seed and averaged over seeds).

Tables (long format, polars):

* ``attribution``: model, dataset, class, layer, head, method, value: the mean over the class's images
  (``class`` null: over the whole dataset); methods attribution, direct, energy (all images) and exact
  (the sample), plus n_images per row.
* ``curves``: model, dataset, image, class, method, seed, k, y: per sampled image; ``random`` rows per seed
  and the mean over seeds (seed null).
* ``faithfulness``: model, dataset, class, method, metric, layer, value: ``auc`` of each ranking's deletion
  curve (mean over images; class null = all sampled images) and ``spearman_vs_exact`` per layer (layer null:
  all layers pooled) between each score and the exact ablation effect over the sampled (image, head) pairs.
* ``reliance``: see :mod:`ccs_dist.attribution.reliance`.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, Subset

from ccs_dist.attribution.reliance import ccs_for_model, reliance_table
from ccs_dist.core.errors import UserError, check_at_least
from ccs_dist.artifacts.schemas import ATTRIBUTION_SCHEMA, CURVES_SCHEMA, FAITHFULNESS_SCHEMA
from ccs_dist.attribution import maths as A
from ccs_dist.data import datasets
from ccs_dist.data.datasets import evenly_spaced_subset
from ccs_dist.evaluate.run import CLASSIFICATION_TASKS, parse_task
from ccs_dist.evaluate.encode import prompt_ensemble
from ccs_dist.text.embed import embed_texts

log = logging.getLogger(__name__)

SCORES = ("attribution", "direct", "energy")


@dataclass(frozen=True)
class AttributionConfig:
    """What to attribute and validate: the job spec section ``attribution`` and the flags of ``ccs-dist attribute``
    (a job runs the stage when ``enabled``). ``metadata``: help, the edge's checks, ``internal`` (set by the stage)."""

    enabled: bool = field(default=False, metadata={"spec_only": True, "help": "run the attribution stage in a job"})
    task: str = field(default="cifar10", metadata={"help": "one classification task, or NAME@PATH (read from PATH)"})
    limit: int | None = field(default=None, metadata={"ge": 1, "help": "attribute at most this many images, evenly spaced (none: all)"})
    samples: int = field(default=32, metadata={"ge": 0, "help": "images (evenly spaced among those) that also get exact ablation effects and deletion curves; 0: none"})
    deletions: int = field(default=16, metadata={"ge": 1, "help": "most heads deleted along a curve (capped at L * H); curve points k = 0..deletions"})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"min_length": 1, "help": "seeds of the random ranking (its curve is averaged over them)"})
    top_k: int = field(default=5, metadata={"ge": 1, "help": "heads per class in the reliance table"})
    threshold: float = field(default=0.0, metadata={"help": "alignment (label vs class name, less an empty-prompt baseline) below which a relied-on head is flagged unexpected"})
    batch_size: int = field(default=32, metadata={"ge": 1, "help": "images per forward/backward pass"})
    templates_per_class: int | None = field(default=None, metadata={"ge": 1, "help": "use only the first N prompt templates of each class (quick runs; none: all)"})
    workers: int = field(default=0, metadata={"ge": 0, "help": "data-loading worker processes"})
    download: bool = field(default=False, metadata={"help": "let torchvision download the datasets it can"})
    data_root: Path = field(default=Path("data"), metadata={"internal": True})  # the job's or --data-root
    max_batch: int | None = field(default=None, metadata={"internal": True})  # samples per masked forward pass; None: 8 * batch_size

    def __post_init__(self) -> None:
        check_at_least(1, batch_size=self.batch_size, limit=self.limit, deletions=self.deletions, top_k=self.top_k,
                       templates_per_class=self.templates_per_class)
        check_at_least(0, samples=self.samples)
        if not self.seeds:
            raise UserError("give at least one seed for the random ranking")


@dataclass
class AttributionResult:
    attribution: pl.DataFrame
    curves: pl.DataFrame
    faithfulness: pl.DataFrame
    reliance: pl.DataFrame
    meta: dict = field(default_factory=dict)


def _load_task(loaded, spec: str, config: AttributionConfig):
    task_spec = parse_task(spec, config.data_root)
    if task_spec.name not in CLASSIFICATION_TASKS:
        raise UserError(
            f"attribution needs a classification task (class names as targets); {task_spec.name} is not one: "
            f"use one of {', '.join(CLASSIFICATION_TASKS)}"
        )
    task = datasets.load_classification(task_spec.name, task_spec.root, loaded.preprocess, download=config.download)
    if config.templates_per_class:
        task = replace(task, templates=task.templates[: config.templates_per_class])
    ds = task.dataset
    idx = evenly_spaced_subset(len(ds), config.limit)
    if idx is not None:
        ds = Subset(ds, idx)
    return task, ds


def _rankings(scores: dict[str, torch.Tensor], ccs_order: torch.Tensor | None, seeds, offset: int, B: int, G: int):
    """(method, seed, order [B, G]) for every ranking of one batch of sampled images."""
    out = [(m, None, A.order_by_score(s)) for m, s in scores.items()]
    if ccs_order is not None:
        out.append(("ccs", None, ccs_order[:1].expand(B, -1)))
    for seed in seeds:
        out.append(("random", int(seed), A.random_orders(B, G, seed, offset)))
    return out


def attribute_task(loaded, task: str, config: AttributionConfig = AttributionConfig(), ccs: pl.DataFrame | None = None,
                   progress: bool = True) -> AttributionResult:
    """Attribution, direct effect, energy (all images) and exact effects + deletion curves (sampled images)."""
    from tqdm.auto import tqdm


    task_obj, ds = _load_task(loaded, task, config)
    dataset = task_obj.name
    classnames = task_obj.classnames
    L, H = loaded.num_layers, loaded.num_heads
    G = L * H
    n_images = len(ds)
    sample_idx = evenly_spaced_subset(n_images, config.samples) if config.samples else []
    sampled = set(range(n_images)) if sample_idx is None else set(sample_idx)
    ks = list(range(0, min(config.deletions, G) + 1))

    ccs_rows = ccs_for_model(ccs, loaded.key)
    if ccs is not None and ccs_rows is None:
        log.warning("the ccs table has no rows for %s: no ccs ranking, no reliance labels", loaded.key)
    ccs_order = None
    if ccs_rows is not None:
        ccs_order = A.global_order({(int(r["layer"]), int(r["head"])): float(r["ccs"]) for r in ccs_rows.iter_rows(named=True)
                                    if r["ccs"] is not None and 0 <= int(r["layer"]) < L and 0 <= int(r["head"]) < H},
                                   L, H, 1)

    classifier_CE = prompt_ensemble(loaded, classnames, task_obj.templates)
    loader = DataLoader(ds, batch_size=config.batch_size, num_workers=config.workers, shuffle=False)
    labels_all: list[np.ndarray] = []
    per_score: dict[str, list[np.ndarray]] = {m: [] for m in SCORES}
    exact_parts: list[np.ndarray] = []
    sampled_labels: list[np.ndarray] = []
    sampled_pos: list[np.ndarray] = []
    sampled_scores: dict[str, list[np.ndarray]] = {m: [] for m in SCORES}
    curve_parts: dict[tuple[str, int | None], list[np.ndarray]] = {}
    pos = 0
    for images, labels in tqdm(loader, desc=f"attribute {dataset}", unit="batch", disable=not progress):
        labels = torch.as_tensor(labels)
        B = labels.shape[0]
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(classnames)):
            raise RuntimeError(f"{dataset}: label out of range 0..{len(classnames) - 1}")
        text_BE = classifier_CE[labels.to(classifier_CE.device)]
        hs = A.attribute_heads(loaded, images, text_BE)
        scores = {"attribution": hs.attribution_BLH, "direct": A.direct_effects(loaded, images, text_BE),
                  "energy": hs.energy_BLH}
        for m in SCORES:
            per_score[m].append(scores[m].cpu().numpy())
        labels_all.append(labels.numpy())
        sel = [b for b in range(B) if pos + b in sampled]
        if sel:
            sel_t = torch.tensor(sel)
            imgs, text_IE = images[sel_t], text_BE[sel_t.to(text_BE.device)]
            exact = A.exact_ablation_effects(loaded, imgs, text_IE, max_batch=config.max_batch)
            exact_parts.append(exact.cpu().numpy())
            sampled_labels.append(labels[sel_t].numpy())
            sampled_pos.append(np.array([pos + b for b in sel]))
            sub = {m: scores[m][sel_t.to(scores[m].device)].cpu() for m in SCORES}
            for m in SCORES:
                sampled_scores[m].append(sub[m].numpy())
            sub["exact"] = exact.cpu()
            for method, seed, order in _rankings(sub, ccs_order, config.seeds, pos, len(sel), G):
                y = A.deletion_curves(loaded, imgs, text_IE, order, ks, max_batch=config.max_batch)
                curve_parts.setdefault((method, seed), []).append(y.cpu().numpy())
        pos += B

    labels_N = np.concatenate(labels_all) if labels_all else np.zeros(0, dtype=np.int64)
    scores_N = {m: np.concatenate(v) if v else np.zeros((0, L, H)) for m, v in per_score.items()}
    exact_ILH = np.concatenate(exact_parts) if exact_parts else np.zeros((0, L, H))
    s_labels = np.concatenate(sampled_labels) if sampled_labels else np.zeros(0, dtype=np.int64)
    s_pos = np.concatenate(sampled_pos) if sampled_pos else np.zeros(0, dtype=np.int64)
    s_scores = {m: np.concatenate(v) if v else np.zeros((0, L, H)) for m, v in sampled_scores.items()}
    curves = {key: np.concatenate(v) for key, v in curve_parts.items()}
    if config.seeds and curves:
        curves[("random", None)] = np.mean([curves[("random", int(s))] for s in config.seeds], axis=0)

    model = loaded.key
    attribution_df = _attribution_rows(model, dataset, classnames, labels_N, {**scores_N}, exact_ILH, s_labels)
    curves_df = _curve_rows(model, dataset, classnames, s_pos, s_labels, curves, ks)
    faith_df = _faithfulness_rows(model, dataset, classnames, s_labels, curves, ks, s_scores, exact_ILH)

    C = len(classnames)
    counts_C = np.bincount(labels_N, minlength=C) if labels_N.size else np.zeros(C, dtype=np.int64)
    class_attr_CLH = np.zeros((C, L, H))
    for c in np.nonzero(counts_C)[0]:
        class_attr_CLH[c] = scores_N["attribution"][labels_N == c].mean(0)

    def embed(texts):
        return embed_texts(loaded, texts)

    reliance_df = reliance_table(model, dataset, classnames, class_attr_CLH, counts_C, ccs_rows, embed,
                                 config.top_k, config.threshold)
    meta = {"model": model, "dataset": dataset, "n_images": int(n_images), "n_sampled": int(len(s_pos)),
            "deletion_ks": ks, "seeds": list(config.seeds), "ccs_ranking": ccs_order is not None,
            "target": "cos(image embedding, prompt-ensemble embedding of the image's class)",
            "direct_effect": "c_h . t_hat / ||image embedding|| (decomposition term, unit text embedding)",
            "config": {k: str(v) for k, v in config.__dict__.items()}}
    return AttributionResult(attribution_df, curves_df, faith_df, reliance_df, meta)


def _attribution_rows(model, dataset, classnames, labels_N, scores_N, exact_ILH, s_labels) -> pl.DataFrame:
    rows = []

    def add(cls, method, values_NLH):
        if values_NLH.shape[0] == 0:
            return
        mean_LH = values_NLH.mean(0)
        L, H = mean_LH.shape
        for layer in range(L):
            for head in range(H):
                rows.append({"model": model, "dataset": dataset, "class": cls, "layer": layer, "head": head,
                             "method": method, "value": float(mean_LH[layer, head]), "n_images": int(values_NLH.shape[0])})

    for method, values in [*scores_N.items(), ("exact", exact_ILH)]:
        lab = s_labels if method == "exact" else labels_N
        add(None, method, values)
        for c in np.unique(lab):
            add(classnames[int(c)], method, values[lab == c])
    return pl.DataFrame(rows, schema=ATTRIBUTION_SCHEMA)


def _curve_rows(model, dataset, classnames, s_pos, s_labels, curves, ks) -> pl.DataFrame:
    cols: dict[str, list] = {k: [] for k in CURVES_SCHEMA}
    J = len(ks)
    for (method, seed), y_IJ in curves.items():
        I = y_IJ.shape[0]
        cols["model"] += [model] * (I * J)
        cols["dataset"] += [dataset] * (I * J)
        cols["image"] += np.repeat(s_pos, J).tolist()
        cols["class"] += [classnames[int(c)] for c in np.repeat(s_labels, J)]
        cols["method"] += [method] * (I * J)
        cols["seed"] += [seed] * (I * J)
        cols["k"] += list(ks) * I
        cols["y"] += y_IJ.reshape(-1).astype(float).tolist()
    return pl.DataFrame(cols, schema=CURVES_SCHEMA)


def _faithfulness_rows(model, dataset, classnames, s_labels, curves, ks, s_scores, exact_ILH) -> pl.DataFrame:
    rows = []
    base = {"model": model, "dataset": dataset}
    for (method, seed), y_IJ in curves.items():
        if seed is not None:
            continue  # per-seed random curves are in the curves table; their mean is the ranking
        auc_I = A.auc(y_IJ, ks)
        rows.append({**base, "class": None, "method": method, "metric": "auc", "layer": None,
                     "value": float(auc_I.mean()), "n_images": int(len(auc_I))})
        for c in np.unique(s_labels):
            sel = s_labels == c
            rows.append({**base, "class": classnames[int(c)], "method": method, "metric": "auc", "layer": None,
                         "value": float(auc_I[sel].mean()), "n_images": int(sel.sum())})
    if exact_ILH.shape[0]:
        for method, values in s_scores.items():
            for layer, rho in A.spearman_by_layer(values, exact_ILH).items():
                rows.append({**base, "class": None, "method": method, "metric": "spearman_vs_exact", "layer": layer,
                             "value": rho, "n_images": int(exact_ILH.shape[0])})
    return pl.DataFrame(rows, schema=FAITHFULNESS_SCHEMA)
