"""``ccs-dist attribute``: parse CLI values, run the attribution of one task, write the tables."""

from __future__ import annotations

import logging
from pathlib import Path

from ccs_dist.ccs import read_ccs_table
from ccs_dist.errors import UserError
from ccs_dist.heads import head_name
from ccs_dist.weights import parse_pretrained

log = logging.getLogger(__name__)

TABLES = {"attribution": "attribution.parquet", "curves": "attribution_curves.parquet",
          "faithfulness": "attribution_faithfulness.parquet", "reliance": "attribution_reliance.parquet"}


def _opt_int(value, name: str) -> int | None:
    if value in (None, "", 0, "0", "none", "None"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be an integer, got {value!r}") from None


def _int(value, name: str) -> int:
    if isinstance(value, bool):
        raise UserError(f"{name} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be an integer, got {value!r}") from None


def attribute_command(model: str, pretrained, task: str, data_root: str, ccs, out: str, limit, samples, deletions,
                      seeds, top_k, threshold, batch_size, device, templates_per_class, workers, download,
                      progress: bool = True) -> str:

    from ccs_dist.attribution.run import AttributionConfig, attribute_task
    from ccs_dist.evaluate.command import as_list
    from ccs_dist.models import load_model
    from ccs_dist.schemas import write_table

    tasks = as_list(task)
    if len(tasks) != 1:
        raise UserError(f"give exactly one task, e.g. --task cifar10 (got {tasks or 'none'})")
    try:
        seed_list = tuple(int(s) for s in as_list(seeds))
    except ValueError:
        raise UserError(f"seeds must be integers, got {seeds!r}") from None
    try:
        thr = float(threshold)
    except (TypeError, ValueError):
        raise UserError(f"threshold must be a number, got {threshold!r}") from None
    config = AttributionConfig(
        data_root=Path(data_root), batch_size=_int(batch_size, "batch_size"), num_workers=_int(workers, "workers"),
        limit=_opt_int(limit, "limit"), samples=_int(samples, "samples"), deletions=_int(deletions, "deletions"),
        seeds=seed_list, top_k=_int(top_k, "top_k"), threshold=thr,
        templates_per_class=_opt_int(templates_per_class, "templates_per_class"), download=bool(download),
    )
    table = read_ccs_table(ccs)
    pretrained = parse_pretrained(pretrained)
    loaded = load_model(str(model), pretrained, device=None if device in (None, "auto") else device)
    result = attribute_task(loaded, tasks[0], config, table, progress=progress)
    folder = Path(out) / "tables"
    written = {}
    for name, filename in TABLES.items():
        written[name] = write_table(getattr(result, name), folder / filename, metadata={**result.meta, "table": name})
    return summary(result, written)


def summary(result, written: dict) -> str:
    import polars as pl

    meta = result.meta
    lines = [f"attribution of {meta['model']} on {meta['dataset']}: {meta['n_images']} images "
             f"({meta['n_sampled']} with exact effects and deletion curves)"]
    lines += [f"  {name}: {path}" for name, path in written.items()]
    top = (result.attribution.filter(pl.col("class").is_null() & (pl.col("method") == "attribution"))
           .sort("value", descending=True).head(5))
    if top.height:
        lines.append("  top heads by mean attribution: " + ", ".join(
            f"{head_name(r['layer'], r['head'])} {r['value']:+.4f}" for r in top.iter_rows(named=True)))
    auc = result.faithfulness.filter((pl.col("metric") == "auc") & pl.col("class").is_null()).sort("value")
    if auc.height:
        lines.append("  deletion AUC (lower = more faithful): " + ", ".join(
            f"{r['method']} {r['value']:.4f}" for r in auc.iter_rows(named=True)))
    rho = result.faithfulness.filter((pl.col("metric") == "spearman_vs_exact") & pl.col("layer").is_null())
    if rho.height:
        lines.append("  spearman vs exact ablation (all layers): " + ", ".join(
            f"{r['method']} {r['value']:.3f}" for r in rho.iter_rows(named=True)))
    return "\n".join(lines)
