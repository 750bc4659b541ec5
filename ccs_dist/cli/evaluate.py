"""``evaluate`` and ``attribute``: soft-pruned head sets evaluated on tasks; heads' attribution on one task."""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from pathlib import Path

import polars as pl

from ccs_dist.artifacts.run_dir import RunDir
from ccs_dist.artifacts.schemas import write_table
from ccs_dist.attribution.run import AttributionConfig
from ccs_dist.ccs.scores import read_ccs_table
from ccs_dist.cli.options import DEFAULT_MODEL, as_list, data_root_arg, device_arg, optional_table, pretrained_arg, terminal
from ccs_dist.core.errors import UserError
from ccs_dist.evaluate.config import EvalConfig
from ccs_dist.models import load_model
from ccs_dist.stages.attribution import attribution_stage, write_attribution_tables
from ccs_dist.stages.evaluate import evaluate_stage

log = logging.getLogger(__name__)


def evaluate(
    self,
    evaluation: EvalConfig,
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    ccs: str | None = None,
    out: str = "reports/evaluate",
    device: str = "auto",
):
    """Soft-prune head sets and evaluate them on tasks; write OUT/tables/evaluation.parquet.

    One pass over each task's data serves every head set (condition). Rows: model, task, condition,
    seed, n_pruned, metric, value; random sets per seed plus random:mean and random:std.
    The flags --conditions ... --bias-ranking are the job spec's evaluation section.

    Args:
        model: open_clip architecture (ViT-B-16, ViT-B-16-SigLIP2, EVA02-B-16, ...), hf-hub:ORG/REPO, or hf:FOLDER / hf:OWNER/NAME (a transformers CLIPModel).
        pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
        ccs: the ccs table (parquet from `ccs-dist score`, or its run directory) that defines high/low/moderate/random/equal/concept
            sets; without it the conditions but original are dropped with a warning.
        out: output directory; the table goes to OUT/tables/evaluation.parquet.
        device: cpu, cuda, cuda:N or auto.
    """
    tasks = list(evaluation.tasks)
    root = data_root_arg(evaluation.data_root, tasks)
    if not tasks:
        raise UserError("give at least one task: --tasks cifar10,food101,... (see --help)")
    table = read_ccs_table(optional_table(ccs, "ccs"))
    if table is None:
        dropped = [c for c in evaluation.conditions if c != "original"]
        if dropped:
            log.warning("no --ccs table: evaluating original and explicit lists only (dropping %s)", ", ".join(dropped))
        evaluation = replace(evaluation, conditions=tuple(c for c in evaluation.conditions if c == "original"))
    if not evaluation.conditions and not evaluation.heads:
        raise UserError("no head sets: give --conditions and/or --heads")
    if evaluation.concept_map is not None:
        evaluation.concept_families()  # a bad concept map is reported before the model loads
    loaded = load_model(str(model), pretrained_arg(pretrained), device=device_arg(device))
    result = evaluate_stage(loaded, table, evaluation, data_root=root, progress=True)
    target = RunDir(out).table("evaluation")
    used = replace(evaluation, data_root=root)
    meta = {"model": loaded.key, "tasks": tasks, "head_sets": [h.__dict__ for h in result.head_sets],
            "config": {f.name: str(getattr(used, f.name)) for f in fields(used)}}
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
        model: open_clip architecture (ViT-B-16, ViT-B-16-SigLIP2, EVA02-B-16, ...), hf-hub:ORG/REPO, or hf:FOLDER / hf:OWNER/NAME (a transformers CLIPModel).
        pretrained: pretrained tag (openai, laion2b_s34b_b88k, ...), a checkpoint file, or none for random init.
        data_root: folder holding the datasets in their distributed layouts (see ccs-dist evaluate --help).
        ccs: optional ccs table (parquet from `ccs-dist score`, or its run directory): adds the ccs ranking and the heads' labels to reliance.
        out: output directory; tables go to OUT/tables/.
        device: cpu, cuda, cuda:N or auto.
        progress: show a progress bar (--no-progress to hide it).
    """
    root = data_root_arg(data_root, [attribution.task])
    if len(as_list(attribution.task)) != 1:
        raise UserError(f"give exactly one task, e.g. --task cifar10 (got {as_list(attribution.task) or 'none'})")
    replace(attribution, data_root=Path(root))  # the library's own checks, before the model loads
    table = read_ccs_table(optional_table(ccs, "ccs"))
    loaded = load_model(str(model), pretrained_arg(pretrained), device=device_arg(device))
    result = attribution_stage(loaded, table, attribution, data_root=root, progress=bool(progress) and terminal())
    return _attribution_summary(result, write_attribution_tables(result, out))


def _summary(df, target: Path) -> str:
    shown = df.filter((pl.col("metric").is_in(["top1", "t2v_R@1"]) | pl.col("metric").str.ends_with("_sum").and_(
        pl.col("metric").str.starts_with("maxskew@"))) & pl.col("condition").ne("random:std"))
    lines = [f"evaluation table ({df.height} rows) written to {target}"]
    for r in shown.iter_rows(named=True):
        seed = "" if r["seed"] is None else f"[{r['seed']}]"
        lines.append(f"  {r['task']:<28} {r['condition'] + seed:<22} n_pruned={r['n_pruned']:<3} {r['metric']}={r['value']:.2f}")
    return "\n".join(lines)


def _attribution_summary(result, written: dict) -> str:
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
