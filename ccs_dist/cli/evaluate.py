"""``evaluate`` and ``attribute``: soft-pruned head sets evaluated on tasks; heads' attribution on one task."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from ccs_dist.attribution.run import AttributionConfig

from ccs_dist.cli.options import (DEFAULT_MODEL, as_list, data_root_arg, device_arg, optional_int, optional_table,
                                  pretrained_arg, seeds_arg, terminal)
from ccs_dist.core.errors import UserError

log = logging.getLogger(__name__)


def evaluate(
    self,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    tasks: str = "cifar10",
    data_root: str | None = None,
    ccs: str | None = None,
    conditions: str = "original,high,low,moderate,random,equal,concept",
    seeds: str = "0,1,2",
    concepts: str | None = None,
    concept_map: str | None = None,
    heads: str | None = None,
    out: str = "reports/evaluate",
    batch_size: int = 64,
    limit: int | None = None,
    device: str = "auto",
    download: bool = False,
    frames: int | None = None,
    caption_mode: str = "first",
    k: int = 10,
    occupations: str | None = None,
    ablation: str = "zero",
    templates_per_class: int | None = None,
    workers: int = 0,
):
    """Soft-prune head sets and evaluate them on tasks; write OUT/tables/evaluation.parquet.

    One pass over each task's data serves every head set (condition). Rows: model, task, condition,
    seed, n_pruned, metric, value; random sets per seed plus random:mean and random:std.

    Args:
        model: open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ...) or hf-hub:ORG/REPO.
        pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
        tasks: comma-separated tasks: cifar10, cifar100, food101, country211, oxford_pets, imagenet, imagenet_a,
            imagenet_r (zero-shot top-1/top-5), msrvtt, msvd, didemo (video retrieval), fairface,
            socialcounterfactuals (MaxSkew@k / NDKL@k); NAME@PATH reads a task from PATH instead of
            --data-root; folder@PATH is any folder of class sub-folders with a classnames.txt; toy-colour,
            toy-shape, toy-position, toy-size, toy-texture are held-out sets of the ccs-toy world (write them
            with python -m ccs_dist.data.synthetic DATA_ROOT toy-colour ...).
        data_root: folder holding the datasets in their distributed layouts (cifar-10-batches-py/, food-101/,
            country211/, oxford-iiit-pet/, imagenet/val/, imagenet-a/, imagenet-r/, msrvtt/, msvd/, didemo/,
            fairface/, socialcounterfactuals/); a wrong layout is reported with the expected one.
        ccs: the ccs table (parquet from `ccs-dist score`, or its run directory) that defines high/low/moderate/random/equal/concept sets.
        conditions: comma-separated: original, high, low, moderate, random, equal, concept (all but original
            need --ccs; without it they are dropped with a warning).
        seeds: comma-separated seeds of the random sets (>= 3 for mean and std).
        concepts: comma-separated concept families to prune (default: every family some head label matches).
        concept_map: JSON file {family: [synonym, ...]} replacing the default label -> family map.
        heads: explicit head lists, ';'-separated, each NAME=L11.H5,L10.H8 or just L11.H5,L10.H8.
        out: output directory; the table goes to OUT/tables/evaluation.parquet.
        batch_size: images per forward pass (every head set shares it).
        limit: evaluate at most this many images (videos) per task, evenly spaced (quick runs).
        device: cpu, cuda, cuda:N or auto.
        download: let torchvision download the datasets it can (cifar10, cifar100, food101, country211, oxford_pets).
        frames: frames per video (default 12; 32 for DiDeMo).
        caption_mode: first (one caption per video, the paper's protocol) or all.
        k: top-k of MaxSkew@k and NDKL@k.
        occupations: occupation list, one a line (default: the paper's 104, shipped with ccs_dist).
        ablation: zero (the paper) or mean (replace a head's output with its mean; needs the engine's means).
        templates_per_class: use only the first N prompt templates of each ensemble (quick runs; default all).
        workers: data-loading worker processes.
    """
    from ccs_dist.ccs.scores import read_ccs_table
    from ccs_dist.models import load_model
    from ccs_dist.stages.evaluate import EvaluateConfig, evaluate_stage
    from ccs_dist.artifacts.schemas import write_table

    task_list = as_list(tasks)
    root = data_root_arg(data_root, task_list)
    if not task_list:
        raise UserError("give at least one task: --tasks cifar10,food101,... (see --help)")
    cond_list = as_list(conditions)
    seed_list = seeds_arg(seeds)
    explicit = _explicit_lists(heads)
    table = read_ccs_table(optional_table(ccs, "ccs"))
    if table is None:
        dropped = [c for c in cond_list if c != "original"]
        if dropped:
            log.warning("no --ccs table: evaluating original and explicit lists only (dropping %s)", ", ".join(dropped))
        cond_list = [c for c in cond_list if c == "original"]
    if not cond_list and not explicit:
        raise UserError("no head sets: give --conditions and/or --heads")
    config = EvaluateConfig.build(
        tasks=tuple(task_list), conditions=tuple(cond_list), seeds=seed_list, concepts=tuple(as_list(concepts)) or None,
        concept_map=concept_map or None, heads=dict(explicit), batch_size=int(batch_size), workers=int(workers),
        limit=optional_int(limit, "limit"), download=bool(download), frames=optional_int(frames, "frames"),
        caption_mode=str(caption_mode), k=int(k), occupations=occupations or None, ablation=str(ablation),
        templates_per_class=optional_int(templates_per_class, "templates_per_class"),
    )
    config.head_set_config()  # bad values (a concept map, ...) are reported before the model loads
    eval_config = config.eval_config(data_root=root, progress=True)
    loaded = load_model(str(model), pretrained_arg(pretrained), device=device_arg(device))
    result = evaluate_stage(loaded, table, config, data_root=root, progress=True)
    target = Path(out) / "tables" / "evaluation.parquet"
    meta = {"model": loaded.key, "tasks": task_list, "head_sets": [h.__dict__ for h in result.head_sets],
            "config": {k_: str(v) for k_, v in eval_config.__dict__.items()}}
    write_table(result.table, target, metadata=meta)
    return _summary(result.table, target)


def attribute(
    self,
    attribution: AttributionConfig,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    data_root: str | None = None,
    ccs: str | None = None,
    out: str = "reports/attribute",
    device: str = "auto",
    progress: bool = True,
):
    """Attribute each zero-shot prediction to the image tower's heads; check faithfulness against exact ablation.

    y = cos(image embedding, class text embedding); a head's attribution is dy/d(gate on its output), all
    heads from one backward pass. Writes OUT/tables/attribution.parquet (model, dataset, class, layer, head,
    method, value; methods attribution, direct, energy, exact; class null = whole dataset),
    attribution_curves.parquet (deletion curves), attribution_faithfulness.parquet (AUC per ranking,
    Spearman vs exact ablation per layer) and attribution_reliance.parquet (top heads per class, CCS labels).
    The flags --task ... --download are the job spec's attribution section.

    Args:
        model: open_clip architecture (ViT-B-32, ViT-B-16, ViT-L-14, ...) or hf-hub:ORG/REPO.
        pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
        data_root: folder holding the datasets in their distributed layouts (see ccs-dist evaluate --help).
        ccs: optional ccs table (parquet from `ccs-dist score`, or its run directory): adds the ccs ranking and the heads' labels to reliance.
        out: output directory; tables go to OUT/tables/.
        device: cpu, cuda, cuda:N or auto.
        progress: show a progress bar (--no-progress to hide it).
    """
    from ccs_dist.ccs.scores import read_ccs_table
    from ccs_dist.models import load_model
    from ccs_dist.stages.attribution import attribution_stage, write_attribution_tables

    root = data_root_arg(data_root, [attribution.task])
    if len(as_list(attribution.task)) != 1:
        raise UserError(f"give exactly one task, e.g. --task cifar10 (got {as_list(attribution.task) or 'none'})")
    replace(attribution, data_root=Path(root))  # the library's own checks, before the model loads
    table = read_ccs_table(optional_table(ccs, "ccs"))
    loaded = load_model(str(model), pretrained_arg(pretrained), device=device_arg(device))
    result = attribution_stage(loaded, table, attribution, data_root=root, progress=bool(progress) and terminal())
    return _attribution_summary(result, write_attribution_tables(result, out))


def _explicit_lists(heads) -> tuple[tuple[str, str], ...]:
    """``"locs=L10.H8,L11.H9;L11.H5"`` (lists separated by ';', or a list of strings) -> (name, heads) pairs."""
    from ccs_dist.ccs.head_sets import parse_explicit

    if heads is None or heads == "":
        return ()
    items = [str(h) for h in heads] if isinstance(heads, (list, tuple)) else str(heads).split(";")
    # fire turns "L11.H5,L10.H8" into a string but a bare list like [L11.H5, L10.H8] would arrive split:
    if isinstance(heads, (list, tuple)) and all("=" not in str(h) and "," not in str(h) for h in heads):
        items = [",".join(str(h) for h in heads)]
    return tuple(parse_explicit(i) for i in items if i.strip())


def _summary(df, target: Path) -> str:
    import polars as pl

    shown = df.filter((pl.col("metric").is_in(["top1", "t2v_R@1"]) | pl.col("metric").str.ends_with("_sum").and_(
        pl.col("metric").str.starts_with("maxskew@"))) & pl.col("condition").ne("random:std"))
    lines = [f"evaluation table ({df.height} rows) written to {target}"]
    for r in shown.iter_rows(named=True):
        seed = "" if r["seed"] is None else f"[{r['seed']}]"
        lines.append(f"  {r['task']:<28} {r['condition'] + seed:<22} n_pruned={r['n_pruned']:<3} {r['metric']}={r['value']:.2f}")
    return "\n".join(lines)


def _attribution_summary(result, written: dict) -> str:
    import polars as pl

    meta = result.meta
    lines = [f"attribution of {meta['model']} on {meta['dataset']}: {meta['n_images']} images "
             f"({meta['n_sampled']} with exact effects and deletion curves)"]
    lines += [f"  {name}: {path}" for name, path in written.items()]
    top = (result.tables["attribution"].filter(pl.col("class").is_null() & (pl.col("method") == "attribution"))
           .sort("value", descending=True).head(5))
    if top.height:
        lines.append("  top heads by mean attribution: " + ", ".join(
            f"L{r['layer']}.H{r['head']} {r['value']:+.4f}" for r in top.iter_rows(named=True)))
    auc = result.tables["attribution_faithfulness"].filter((pl.col("metric") == "auc") & pl.col("class").is_null()).sort("value")
    if auc.height:
        lines.append("  deletion AUC (lower = more faithful): " + ", ".join(
            f"{r['method']} {r['value']:.4f}" for r in auc.iter_rows(named=True)))
    rho = result.tables["attribution_faithfulness"].filter((pl.col("metric") == "spearman_vs_exact") & pl.col("layer").is_null())
    if rho.height:
        lines.append("  spearman vs exact ablation (all layers): " + ", ".join(
            f"{r['method']} {r['value']:.3f}" for r in rho.iter_rows(named=True)))
    return "\n".join(lines)
