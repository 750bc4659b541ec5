"""Evaluate head sets on tasks and write the ``evaluation`` table.

One data pass per task serves every head set (condition). Rows: model, task, condition, seed, n_pruned,
metric, value. Random conditions get per-seed rows (condition ``random``, seed s) plus ``random:mean`` and
``random:std`` rows (seed null) over the seeds.

Task specs: a name (``cifar10``, ``fairface``, ``msrvtt``, ...) read from the data root, or ``NAME@PATH`` to
read that task from another root; ``folder@PATH`` is any folder with a class-names file.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ccs_dist.core.errors import UserError
from ccs_dist.data import datasets
from ccs_dist.data.datasets import evenly_spaced_subset
from ccs_dist.evaluate import bias, video
from ccs_dist.data.paper_tasks import with_class_names
from ccs_dist.evaluate.config import EvalConfig
from ccs_dist.evaluate.encode import HeadSetEncoder
from ccs_dist.data.metadata import templates
from ccs_dist.evaluate.zeroshot import evaluate_zeroshot
from ccs_dist.ccs.head_sets import HeadSet
from ccs_dist.models.masked import reference_means
from ccs_dist.artifacts.schemas import EVALUATION_SCHEMA

log = logging.getLogger(__name__)

CLASSIFICATION_TASKS = tuple(datasets.LOADERS)
VIDEO_TASKS = tuple(video.LAYOUTS)
BIAS_TASKS = tuple(bias.BIAS_LOADERS)
ALL_TASKS = CLASSIFICATION_TASKS + VIDEO_TASKS + BIAS_TASKS
TABLE_COLUMNS = ("model", "task", "condition", "seed", "n_pruned", "metric", "value")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    root: Path


def parse_task(spec: str, data_root: Path | None) -> TaskSpec:
    name, _, path = spec.strip().partition("@")
    if name not in ALL_TASKS:
        raise UserError(f"unknown task {name!r}; known: {', '.join(ALL_TASKS)} (NAME@PATH reads it from PATH)")
    if name == "folder" and not path:
        raise UserError("the folder task needs a path: folder@/path/to/dataset (with classnames.txt)")
    if not path and data_root is None:
        raise UserError(f"task {name} needs a data root: give data_root (--data-root FOLDER) or name its folder as {name}@PATH")
    return TaskSpec(name, Path(path) if path else Path(data_root))


def _rows(model: str, task: str, head_sets: Sequence[HeadSet], results: Sequence[dict[str, float]]) -> list[dict]:
    rows = []
    for hs, metrics in zip(head_sets, results):
        for metric, value in metrics.items():
            rows.append({"model": model, "task": task, "condition": hs.condition, "seed": hs.seed,
                         "n_pruned": hs.n_pruned, "metric": metric, "value": float(value)})
    return rows


def evaluate_rows(loaded, tasks: Sequence[str], head_sets: Sequence[HeadSet], config: EvalConfig = EvalConfig(),
                  encoder: HeadSetEncoder | None = None) -> list[dict]:
    """The rows of every task x head set, task by task (the table less its random-seed summary)."""
    if not head_sets:
        raise UserError("no head sets to evaluate")
    specs = [parse_task(t, config.data_root) for t in tasks]
    if not specs:
        raise UserError("no tasks given")
    rows: list[dict] = []
    for spec in tqdm(specs, desc=f"evaluate {loaded.key}", unit="task", disable=None if config.progress else True):
        log.info("%s: evaluating %s on %d head sets", loaded.key, spec.name, len(head_sets))
        t0 = time.perf_counter()
        rows += evaluate_task(loaded, spec, head_sets, config, encoder)
        log.info("%s: %s done in %.1f s", loaded.key, spec.name, time.perf_counter() - t0)
    return rows


def random_summary(rows: Sequence[dict]) -> list[dict]:
    """``random:mean`` / ``random:std`` (sample std, ddof=1; 0 for one seed) over the seeds of each metric."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["condition"] == "random":
            groups.setdefault((r["model"], r["task"], r["metric"]), []).append(r)
    out = []
    for (model, task, metric), rs in groups.items():
        values = np.array([r["value"] for r in rs], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        for cond, value in (("random:mean", float(values.mean())), ("random:std", std)):
            out.append({"model": model, "task": task, "condition": cond, "seed": None,
                        "n_pruned": rs[0]["n_pruned"], "metric": metric, "value": value})
    return out


def _head_means(loaded, loader: DataLoader, ablation: str):
    """For ``ablation="mean"``: each head's mean output over the task's own images (one extra pass), in force
    within the block; for ``zero`` a no-op."""
    if ablation != "mean":
        return contextlib.nullcontext()
    return reference_means(loaded, (images for images, _ in loader))


def evaluate_task(loaded, spec: TaskSpec, head_sets: Sequence[HeadSet], config: EvalConfig,
                  encoder: HeadSetEncoder | None = None) -> list[dict]:
    """Rows of the evaluation table for one task and every head set."""
    heads = [hs.heads for hs in head_sets]
    model = loaded.key
    if spec.name in CLASSIFICATION_TASKS:
        task = datasets.load_classification(spec.name, spec.root, loaded.preprocess, download=config.download)
        task = with_class_names(task, config.class_names)
        if config.templates_per_class:
            task = replace(task, templates=task.templates[: config.templates_per_class])
        ds = task.dataset
        idx = evenly_spaced_subset(len(ds), config.limit)
        if idx is not None:
            ds = Subset(ds, idx)
        loader = DataLoader(ds, batch_size=config.batch_size, num_workers=config.workers)
        with _head_means(loaded, loader, config.ablation):
            results = evaluate_zeroshot(loaded, task, heads, loader, encoder, config.ablation)
        return _rows(model, task.name, head_sets, results)
    if spec.name in VIDEO_TASKS:
        if config.ablation == "mean":
            raise UserError(f"{spec.name}: mean ablation is implemented for image tasks only; use --ablation zero")
        vt = video.load_video_task(spec.name, spec.root)
        idx = evenly_spaced_subset(len(vt.video_ids), config.limit)
        if idx is not None:
            vt = video.VideoTask(vt.name, tuple(vt.video_ids[i] for i in idx), tuple(vt.paths[i] for i in idx),
                                 tuple(vt.captions[i] for i in idx), vt.missing)
        results = video.evaluate_video_retrieval(loaded, vt, heads, loaded.preprocess, config.frames,
                                                 config.caption_mode, config.batch_size, encoder, config.ablation,
                                                 pooling=config.video_pooling)
        return _rows(model, vt.name, head_sets, results)
    bt = bias.BIAS_LOADERS[spec.name](spec.root)
    idx = evenly_spaced_subset(len(bt.paths), config.limit)
    if idx is not None:
        bt = bias.BiasTask(bt.name, tuple(bt.paths[i] for i in idx),
                           tuple(bias.Attribute(a.name, a.names, a.groups_N[idx]) for a in bt.attributes))
    ref = datasets.ImageListDataset(bt.paths, [0] * len(bt.paths), loaded.preprocess)
    ref_loader = DataLoader(ref, batch_size=config.batch_size, num_workers=config.workers)
    occupations = bias.read_occupations(config.occupations)
    prompts = templates("occupation_paper" if config.bias_templates == "paper" else "occupation")[: config.templates_per_class or None]
    with _head_means(loaded, ref_loader, config.ablation):
        per_set = bias.evaluate_bias(loaded, bt, heads, loaded.preprocess, occupations, prompts,
                                     config.k, config.batch_size, config.workers, encoder, config.ablation,
                                     ranking=config.bias_ranking)
    rows = []
    for attr_task in per_set[0]:
        rows += _rows(model, attr_task, head_sets, [r[attr_task] for r in per_set])
    return rows


def evaluate(loaded, tasks: Sequence[str], head_sets: Sequence[HeadSet], config: EvalConfig = EvalConfig(),
             encoder: HeadSetEncoder | None = None):
    """The ``evaluation`` table (polars DataFrame) of every task x head set for one model."""
    rows = evaluate_rows(loaded, tasks, head_sets, config, encoder)
    rows += random_summary(rows)
    return pl.DataFrame(rows, schema=EVALUATION_SCHEMA)
