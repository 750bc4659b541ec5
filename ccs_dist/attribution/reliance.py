"""Semantic reliance: the heads each class's prediction relies on most, with their CCS labels.

For every class, the ``top_k`` heads by mean attribution. When a ``ccs`` table is given, each head gets its
label, CCS and category, and an alignment score between label and class name in the model's own text
space: ``cos(t(label), t(class)) - cos(t(""), t(class))`` with ``t`` the unit text embedding of the raw
string (no prompt template). The empty-prompt baseline removes what any text shares with the class name;
alignment below ``threshold`` (default 0) flags a head the prediction relies on for an unexpected concept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from ccs_dist.artifacts.schemas import RELIANCE_SCHEMA
from ccs_dist.core.errors import UserError


def ccs_for_model(ccs: pl.DataFrame | None, model: str) -> pl.DataFrame | None:
    """The rows of ``ccs`` for ``model`` (None when no table or no rows)."""
    if ccs is None:
        return None
    missing = {"model", "layer", "head", "label", "ccs"} - set(ccs.columns)
    if missing:

        raise UserError(f"the ccs table lacks columns {sorted(missing)}: give the ccs.parquet written by `ccs-dist score`")
    rows = ccs.filter(pl.col("model") == model)
    return rows if rows.height else None


def alignment_scores(embed, labels: Sequence[str], classnames: Sequence[str]) -> np.ndarray:
    """[len(labels), len(classnames)]: ``cos(label, class) - cos("", class)`` with ``embed(texts) -> [T, E]`` unit rows."""
    labels, classnames = list(labels), list(classnames)
    emb = np.asarray(embed([""] + labels + classnames), dtype=np.float64)
    empty_E, label_TE, class_CE = emb[0], emb[1 : 1 + len(labels)], emb[1 + len(labels) :]
    return label_TE @ class_CE.T - (class_CE @ empty_E)[None, :]


def reliance_table(
    model: str,
    dataset: str,
    classnames: Sequence[str],
    class_attribution_CLH: np.ndarray,
    class_counts_C: np.ndarray,
    ccs: pl.DataFrame | None,
    embed,
    top_k: int = 5,
    threshold: float = 0.0,
) -> pl.DataFrame:
    """One row per (class, rank) for the ``top_k`` heads by mean attribution (classes without images skipped)."""
    C, L, H = class_attribution_CLH.shape
    info: dict[tuple[int, int], dict] = {}
    if ccs is not None:
        for r in ccs.iter_rows(named=True):
            info[(int(r["layer"]), int(r["head"]))] = r
    labels = sorted({str(r["label"]) for r in info.values() if r.get("label")})
    align = alignment_scores(embed, labels, classnames) if labels else np.zeros((0, C))
    label_index = {lab: i for i, lab in enumerate(labels)}
    rows = []
    k = min(int(top_k), L * H)
    for c in range(C):
        if class_counts_C[c] == 0:
            continue
        flat = class_attribution_CLH[c].reshape(-1)
        order = np.argsort(-flat, kind="stable")[:k]
        for rank, n in enumerate(order):
            layer, head = int(n // H), int(n % H)
            r = info.get((layer, head))
            label = str(r["label"]) if r is not None and r.get("label") else None
            a = float(align[label_index[label], c]) if label is not None else None
            rows.append({
                "model": model, "dataset": dataset, "class": classnames[c], "rank": rank, "layer": layer, "head": head,
                "attribution": float(flat[n]), "label": label,
                "ccs": None if r is None or r.get("ccs") is None else int(r["ccs"]),
                "category": None if r is None else r.get("category"),
                "alignment": a, "unexpected": None if a is None else bool(a < threshold),
            })
    return pl.DataFrame(rows, schema=RELIANCE_SCHEMA)
