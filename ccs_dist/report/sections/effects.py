"""CCS against what a head does: one scatter per model of each scored head's CCS and its single-head effect.

The effect comes from the ``attribution`` table as ``ccs-dist attribute`` writes it (model, dataset, class,
layer, head, method, value, n_images): the dataset-level row (``class`` null) of the first method present
in EFFECT_METHODS; a table without a ``class`` column is averaged over its rows per head.
Head-set membership (random, concept) is rebuilt with :func:`ccs_dist.prune.build_head_sets` from the
run manifest's evaluation spec, exactly as the evaluate stage built it; without that spec only the CCS
categories are marked.
"""

from __future__ import annotations

import logging

import polars as pl

from ccs_dist.ccs.head_sets import HeadSetConfig, build_head_sets
from ccs_dist.core.heads import head_name, parse_head_name
from ccs_dist.report import charts
from ccs_dist.report.html import Markup, tag
from ccs_dist.report.load import RunData
from ccs_dist.report.view import ReportView

log = logging.getLogger(__name__)

# method -> (axis label, what it is); the first present is plotted
EFFECT_METHODS = {
    "exact": ("exact ablation effect", "y − y with the head zeroed, y = cos(image, its class prompt)"),
    "direct": ("direct effect", "the head's decomposition term on the class prompt, over the embedding norm"),
    "direct_effect": ("direct effect", "the head's decomposition term on the class prompt"),
    "attribution": ("attribution", "gradient of the target similarity through a gate on the head"),
}
ATTRIBUTE_HINT = ("run `ccs-dist attribute --model ARCH --pretrained TAG --task cifar10 --ccs RUN_DIR/tables/ccs.parquet "
                  "--out RUN_DIR`, then `ccs-dist report RUN_DIR`")


def _effects(at: pl.DataFrame, model: str) -> list[tuple[str, str, pl.DataFrame]]:
    """(dataset, method, per-head frame with value and n) for one model: one method per dataset."""
    rows = at.filter(pl.col("model") == model)
    if "class" in rows.columns:
        overall = rows.filter(pl.col("class").is_null())
        rows = overall if overall.height else rows
    out = []
    for dataset in sorted(rows["dataset"].unique().drop_nulls().to_list(), key=str):
        ds = rows.filter(pl.col("dataset") == dataset)
        methods = ds["method"].unique().to_list()
        method = next((m for m in EFFECT_METHODS if m in methods), sorted(map(str, methods))[0] if methods else None)
        if method is None:
            continue
        n_col = pl.col("n_images").max() if "n_images" in ds.columns else pl.lit(None, dtype=pl.Int64)
        per_head = (ds.filter(pl.col("method") == method).group_by("layer", "head")
                    .agg(pl.col("value").cast(pl.Float64).mean().alias("value"), n_col.alias("n")))
        out.append((str(dataset), str(method), per_head))
    return out


def head_set_membership(data: RunData, model: str) -> dict[tuple[int, int], list[str]] | None:
    """(layer, head) -> names of the random / concept head sets it was pruned in; None when the manifest cannot say."""
    spec = data.manifest.get("spec") if isinstance(data.manifest.get("spec"), dict) else {}
    ev = spec.get("evaluation") if isinstance(spec.get("evaluation"), dict) else None
    info = next((m for m in data.manifest.get("models") or [] if isinstance(m, dict) and m.get("model") == model), {})
    ccs = data.get("ccs")
    if not ev or ccs is None or not info.get("num_layers") or not info.get("num_heads"):
        return None
    try:
        config = HeadSetConfig(conditions=tuple(ev.get("conditions") or ()), seeds=tuple(ev.get("seeds") or ()),
                               concepts=tuple(ev["concepts"]) if ev.get("concepts") else None,
                               min_stability=ev.get("min_stability"), concept_heads=ev.get("concept_heads") or "any",
                               random_layers=ev.get("random_layers") or "scored")
        prune_log = logging.getLogger("ccs_dist.prune")
        level = prune_log.level
        prune_log.setLevel(logging.ERROR)  # its warnings were said when the sets were built for evaluation
        try:
            sets = build_head_sets(ccs, model, int(info["num_layers"]), int(info["num_heads"]), config)
        finally:
            prune_log.setLevel(level)
    except Exception as e:  # noqa: BLE001 - an older or hand-made manifest: categories only
        log.info("head sets of %s not rebuilt (%s)", model, e)
        return None
    out: dict[tuple[int, int], list[str]] = {}
    for s in sets:
        if s.condition == "random" or s.condition.startswith("concept:"):
            name = f"random (seed {s.seed})" if s.condition == "random" else s.condition
            for h in s.heads:
                out.setdefault(parse_head_name(h), []).append(name)
    return out


def ccs_effect_section(view: ReportView) -> Markup:
    data, models = view.data, view.models
    at = data.get("attribution")
    if at is None:
        return tag("p", tag("strong", "No attribution table in this run, so no head's effect to plot. "),
                   f"To see each head's CCS against what removing it costs, {ATTRIBUTE_HINT}.", class_="note", id="no-attribution")
    parts = [tag("p", "Each point is one scored head: its CCS (x, spread sideways by a fixed per-head jitter so equal "
                      "scores do not overlap) against its single-head effect from the attribution table (y; the exact "
                      "ablation effect y − y(head zeroed) when present, else the direct effect). Hover a point for the "
                      "head, click it for its card.", class_="muted")]
    blocks = []
    for m in models:
        scored = {k: h for k, h in m.heads.items() if h["scored"] and h["ccs"] is not None}
        if not scored:
            continue
        effects = _effects(at, m.key)
        if not effects:
            hint = ATTRIBUTE_HINT
            if m.arch:
                hint = hint.replace("ARCH", m.arch).replace("TAG", m.pretrained or "none")
            blocks.append(tag("p", f"{m.key}: no rows in the attribution table; {hint}.", class_="note"))
            continue
        members = head_set_membership(data, m.key)
        for dataset, method, per_head in effects:
            by_head = {head_name(r["layer"], r["head"]): r for r in per_head.iter_rows(named=True)}
            points = [{"hk": k, "m": m.index, "ccs": h["ccs"], "effect": float(by_head[k]["value"]), "cat": h["cat"],
                       "label": h["label"], "sets": (members or {}).get(parse_head_name(k), [])}
                      for k, h in scored.items() if k in by_head and by_head[k]["value"] is not None]
            missing = len(scored) - len(points)
            n_images = max((int(r["n"]) for r in by_head.values() if r["n"] is not None), default=None)
            title = f"{m.key} · {dataset}"
            axis, what = EFFECT_METHODS.get(method, (method, "as the attribution table names it"))
            caption = [f"{len(points)} scored heads; effect: {method} ({what})"
                       + (f", mean over n = {n_images:,} images" if n_images else "")]
            if missing:
                caption.append(f"{missing} scored heads have no {method} value and are not drawn")
            if members is None:
                caption.append("random / concept set membership unknown (the run manifest has no evaluation spec)")
            blocks.append(tag("figure", charts.ccs_effect_scatter(title, points, axis, sets_known=members is not None) if points else "",
                              tag("figcaption", tag("b", title), ": ", "; ".join(caption) + "."),
                              class_="effect", data_model=m.key, data_points=len(points)))
    parts.append(tag("div", *blocks, class_="effects"))
    return Markup("".join(parts))
