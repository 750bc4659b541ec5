"""The product's tables: their column schemas (the one home of each) and the one parquet writer.

Tables are written with run metadata in the parquet footer (:func:`write_table`); CSV exports go
through :func:`csv_safe`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from ccs_dist.artifacts.store import atomic_write_bytes

METADATA_KEY = b"ccs_dist"

HEAD_COLUMNS = {"model": pl.String, "layer": pl.Int64, "head": pl.Int64}
# spans: one row per (model, layer, head, rank); the per-head facts after ``variance`` repeat on each row
SPANS_REQUIRED = {**HEAD_COLUMNS, "rank": pl.Int64, "text": pl.String, "variance": pl.Float64}
# ``unit``: the kind of unit a row is: "head" (a trunk head, L{layer}.H{head}), or for a tower pooled by attention
# (SigLIP) "pool_head" / "pool_mlp", the pooling block's heads and MLP, at layer = the trunk's depth (one past its last
# layer), head = the unit's index (its MLP after its heads)
SPANS_SCHEMA = {**SPANS_REQUIRED, "requested_rank": pl.Int64, "effective_rank": pl.Int64, "stability": pl.Float64,
                "span1_stability": pl.Float64, "unit": pl.String}
TRUNK_UNIT = "head"


def trunk_heads(df: pl.DataFrame) -> pl.DataFrame:
    """The rows of trunk heads (a table from before units had kinds holds only those)."""
    return df if "unit" not in df.columns else df.filter(pl.col("unit").is_null() | (pl.col("unit") == TRUNK_UNIT))
LABELS_SCHEMA = {**HEAD_COLUMNS, "label": pl.String, "backend": pl.String, "error": pl.String}
JUDGMENTS_SCHEMA = {**HEAD_COLUMNS, "rank": pl.Int64, "text": pl.String, "label": pl.String, "aligned": pl.Boolean,
                    "judge": pl.String, "error": pl.String}
# one row per judge scored on the shipped gold pairs (ccs_dist.llm.gold); rates over pairs with a valid verdict
JUDGE_VALIDATION_SCHEMA = {"judge": pl.String, "gold": pl.String, "n_pairs": pl.Int64, "n_failed": pl.Int64, "n": pl.Int64,
                           "n_positive": pl.Int64, "n_negative": pl.Int64, **{
                               f"{m}{s}": pl.Float64 for m in ("kappa", "raw_agreement", "fpr", "fnr") for s in ("", "_lo", "_hi")},
                           "fpr_other_factor": pl.Float64, "fpr_off_topic": pl.Float64}
CCS_AT_K_SCHEMA = {"model": pl.String, "k": pl.Int64, "fraction": pl.Float64, "n_heads": pl.Int64, "n_flagged": pl.Int64}
EVALUATION_SCHEMA = {"model": pl.String, "task": pl.String, "condition": pl.String, "seed": pl.Int64,
                     "n_pruned": pl.Int64, "metric": pl.String, "value": pl.Float64}
ATTRIBUTION_SCHEMA = {"model": pl.String, "dataset": pl.String, "class": pl.String, "layer": pl.Int64, "head": pl.Int64,
                      "method": pl.String, "value": pl.Float64, "n_images": pl.Int64}
CURVES_SCHEMA = {"model": pl.String, "dataset": pl.String, "image": pl.Int64, "class": pl.String, "method": pl.String,
                 "seed": pl.Int64, "k": pl.Int64, "y": pl.Float64}
FAITHFULNESS_SCHEMA = {"model": pl.String, "dataset": pl.String, "class": pl.String, "method": pl.String,
                       "metric": pl.String, "layer": pl.Int64, "value": pl.Float64, "n_images": pl.Int64}
RELIANCE_SCHEMA = {"model": pl.String, "dataset": pl.String, "class": pl.String, "rank": pl.Int64, "layer": pl.Int64,
                   "head": pl.Int64, "attribution": pl.Float64, "label": pl.String, "ccs": pl.Int64, "category": pl.String,
                   "alignment": pl.Float64, "unexpected": pl.Boolean}

# the head card (ccs_dist.card): one row per (head, score); its CCS@K intervals; how the scores agree over heads
CARD_SCORES = ("ccs", "ccs_weighted", "detection_auroc", "detection_balanced_accuracy", "simulation_rho",
               "monosemanticity", "specificity_direct", "specificity_whole")
HEAD_SCORES_SCHEMA = {**HEAD_COLUMNS, "label": pl.Utf8, "score": pl.Utf8, "value": pl.Float64, "lo": pl.Float64,
                      "hi": pl.Float64, "null_value": pl.Float64, "n": pl.Int64}
CCS_INTERVALS_SCHEMA = {"model": pl.Utf8, "k": pl.Int64, "share": pl.Float64, "lo": pl.Float64, "hi": pl.Float64,
                        "resamples": pl.Int64}
SCORE_AGREEMENT_SCHEMA = {"model": pl.Utf8, "score_a": pl.Utf8, "score_b": pl.Utf8, "spearman": pl.Float64, "n": pl.Int64}
# the planted-concept benchmark (ccs_dist.benchmark): the plan a planted world ships, per-head comparison, checks
PLAN_SCHEMA = {**HEAD_COLUMNS, "kind": pl.String, "factors": pl.String, "weights": pl.List(pl.Float64), "expected": pl.String}
BENCHMARK_HEADS_SCHEMA = {**HEAD_COLUMNS, "kind": pl.String, "plan_factors": pl.String, "plan_weights": pl.List(pl.Float64),
                          "plan_factor": pl.String, "expected": pl.String, "eta2_factor": pl.String, "eta2": pl.Float64,
                          "eta2_baseline": pl.Float64, "ablation_factor": pl.String, "ablation_drop": pl.Float64,
                          "label": pl.String, "label_factors": pl.String, "ccs": pl.Float64, "ccs_weighted": pl.Float64}
BENCHMARK_CHECKS_SCHEMA = {"model": pl.String, "check": pl.String, "value": pl.Float64, "spread": pl.Float64,
                           "null_mean": pl.Float64, "null_p95": pl.Float64, "p_value": pl.Float64, "n": pl.Int64,
                           "passed": pl.Boolean}


def write_table(df: pl.DataFrame, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``df`` as parquet atomically; ``metadata`` goes into the file's key-value footer as JSON."""
    table = df.to_arrow()
    if metadata is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(metadata, default=str).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta[METADATA_KEY]) if METADATA_KEY in meta else {}


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(df: pl.DataFrame) -> pl.DataFrame:
    """Text cells a spreadsheet would run as a formula (starting ``= + - @``, tab or CR) get a leading
    ``'`` (as do such cells already starting with ``'``, so the round trip is exact), so that a CSV opened
    in a spreadsheet shows them as text; :func:`csv_unescape` undoes it."""
    text_cols = [c for c, t in df.schema.items() if t == pl.String]
    return df.with_columns(
        pl.when(pl.col(c).str.contains(r"^'*[=+\-@\t\r]")).then(pl.lit("'") + pl.col(c)).otherwise(pl.col(c)).alias(c)
        for c in text_cols
    )


def csv_unescape(df: pl.DataFrame) -> pl.DataFrame:
    """Text read back from a CSV written with :func:`csv_safe`: the added ``'`` removed."""
    text_cols = [c for c, t in df.schema.items() if t == pl.String]
    return df.with_columns(
        pl.when(pl.col(c).str.contains(r"^'+[=+\-@\t\r]")).then(pl.col(c).str.slice(1)).otherwise(pl.col(c)).alias(c)
        for c in text_cols
    )
