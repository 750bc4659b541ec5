"""``ccs-dist evaluate``: parse CLI values, build the head sets and the eval config, write the evaluation table."""

from __future__ import annotations

import logging
from pathlib import Path

from ccs_dist.ccs import read_ccs_table
from ccs_dist.errors import UserError

log = logging.getLogger(__name__)


def as_list(value, sep: str = ",") -> list[str]:
    """A CLI value (``"a,b"``, a tuple from fire, a list, a scalar, None) -> list of non-empty strings."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)):
        out = []
        for v in value:
            out += as_list(v, sep)
        return out
    return [p.strip() for p in str(value).split(sep) if p.strip()]


def _explicit_lists(heads) -> tuple[tuple[str, str], ...]:
    """``"locs=L10.H8,L11.H9;L11.H5"`` (lists separated by ';', or a list of strings) -> (name, heads) pairs."""
    from ccs_dist.prune import parse_explicit

    if heads is None or heads == "":
        return ()
    items = [str(h) for h in heads] if isinstance(heads, (list, tuple)) else str(heads).split(";")
    # fire turns "L11.H5,L10.H8" into a string but a bare list like [L11.H5, L10.H8] would arrive split:
    if isinstance(heads, (list, tuple)) and all("=" not in str(h) and "," not in str(h) for h in heads):
        items = [",".join(str(h) for h in heads)]
    return tuple(parse_explicit(i) for i in items if i.strip())


def evaluate_command(
    model: str,
    pretrained: str | None,
    tasks,
    data_root: str,
    ccs: str | None,
    conditions,
    seeds,
    concepts,
    concept_map: str | None,
    heads,
    out: str,
    batch_size: int,
    limit: int | None,
    device: str | None,
    download: bool,
    frames: int | None,
    caption_mode: str,
    k: int,
    occupations: str | None,
    ablation: str,
    templates_per_class: int | None,
    workers: int,
) -> str:

    from ccs_dist.evaluate.run import EvalConfig, evaluate
    from ccs_dist.models import load_model
    from ccs_dist.prune import HeadSetConfig, build_head_sets, load_concept_map
    from ccs_dist.tables import write_table

    task_list = as_list(tasks)
    if not task_list:
        raise UserError("give at least one task: --tasks cifar10,food101,... (see --help)")
    cond_list = as_list(conditions)
    try:
        seed_list = tuple(int(s) for s in as_list(seeds))
    except ValueError:
        raise UserError(f"seeds must be integers, got {seeds!r}") from None
    explicit = _explicit_lists(heads)
    table = read_ccs_table(ccs)
    if table is None:
        dropped = [c for c in cond_list if c != "original"]
        if dropped:
            log.warning("no --ccs table: evaluating original and explicit lists only (dropping %s)", ", ".join(dropped))
        cond_list = [c for c in cond_list if c == "original"]
    head_config = HeadSetConfig(
        conditions=tuple(cond_list),
        seeds=seed_list,
        concepts=tuple(as_list(concepts)) or None,
        concept_map=load_concept_map(concept_map) if concept_map else None,
        explicit=explicit,
    )
    eval_config = EvalConfig(
        data_root=Path(data_root), batch_size=int(batch_size), num_workers=int(workers),
        limit=None if limit in (None, "", 0) else int(limit), download=bool(download),
        frames=None if frames in (None, "", 0) else int(frames), caption_mode=str(caption_mode), k=int(k),
        occupations=Path(occupations) if occupations else None, ablation=str(ablation),
        templates_per_class=None if templates_per_class in (None, "", 0) else int(templates_per_class),
    )
    pretrained = None if pretrained in (None, "", "none", "None") else str(pretrained)
    loaded = load_model(str(model), pretrained, device=None if device in (None, "auto") else device)
    head_sets = build_head_sets(table, loaded.key, loaded.num_layers, loaded.num_heads, head_config)
    if not head_sets:
        raise UserError("no head sets: give --conditions and/or --heads")
    log.info("head sets: %s", ", ".join(f"{h.condition}{'' if h.seed is None else f'[{h.seed}]'}({h.n_pruned})" for h in head_sets))
    df = evaluate(loaded, task_list, head_sets, eval_config)
    target = Path(out) / "tables" / "evaluation.parquet"
    meta = {"model": loaded.key, "tasks": task_list, "head_sets": [h.__dict__ for h in head_sets],
            "config": {k_: str(v) for k_, v in eval_config.__dict__.items()}}
    write_table(df, target, metadata=meta)
    return _summary(df, target)


def _summary(df, target: Path) -> str:
    import polars as pl

    shown = df.filter((pl.col("metric").is_in(["top1", "t2v_R@1"]) | pl.col("metric").str.ends_with("_sum").and_(
        pl.col("metric").str.starts_with("maxskew@"))) & pl.col("condition").ne("random:std"))
    lines = [f"evaluation table ({df.height} rows) written to {target}"]
    for r in shown.iter_rows(named=True):
        seed = "" if r["seed"] is None else f"[{r['seed']}]"
        lines.append(f"  {r['task']:<28} {r['condition'] + seed:<22} n_pruned={r['n_pruned']:<3} {r['metric']}={r['value']:.2f}")
    return "\n".join(lines)
