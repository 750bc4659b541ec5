"""Synthetic head-card score tables in their on-disk format (head_scores, ccs_intervals, score_agreement), written
into a run directory beside the tables of :func:`tests.support.report_fixtures.make_run`."""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl

SCORES = ("ccs", "ccs_weighted", "detection_auroc", "detection_balanced_accuracy", "simulation_rho", "monosemanticity",
          "specificity_direct", "specificity_whole")
HEAD_SCORES = {"model": pl.String, "layer": pl.Int64, "head": pl.Int64, "label": pl.String, "score": pl.String,
               "value": pl.Float64, "lo": pl.Float64, "hi": pl.Float64, "null_value": pl.Float64, "n": pl.Int64}
CCS_INTERVALS = {"model": pl.String, "k": pl.Int64, "share": pl.Float64, "lo": pl.Float64, "hi": pl.Float64, "resamples": pl.Int64}
SCORE_AGREEMENT = {"model": pl.String, "score_a": pl.String, "score_b": pl.String, "spearman": pl.Float64, "n": pl.Int64}


def write_score_tables(run: Path, seed: int = 0) -> dict[str, pl.DataFrame]:
    """One row per (head of the run's ccs table, score); a few intervals missing; returns the frames written."""
    rng = random.Random(seed)
    ccs = pl.read_parquet(run / "tables" / "ccs.parquet")
    rows = []
    for r in ccs.iter_rows(named=True):
        for s in SCORES:
            v = float(r["ccs"]) if s == "ccs" else rng.uniform(0.0, 1.0)
            half = rng.uniform(0.02, 0.2)
            lo, hi = (None, None) if rng.random() < 0.1 else (v - half, v + half)
            rows.append({"model": r["model"], "layer": r["layer"], "head": r["head"], "label": r["label"], "score": s,
                         "value": v, "lo": lo, "hi": hi, "null_value": 0.5 if s.startswith("detection") else None, "n": 40})
    models = ccs["model"].unique(maintain_order=True).to_list()
    intervals = [{"model": m, "k": k, "share": 1 / 6, "lo": 0.1, "hi": 0.25, "resamples": 200} for m in models for k in range(6)]
    agreement = [{"model": m, "score_a": a, "score_b": b, "spearman": rng.uniform(-1, 1), "n": ccs.height}
                 for m in models for i, a in enumerate(SCORES) for b in SCORES[i + 1:]]
    frames = {"head_scores": pl.DataFrame(rows, schema=HEAD_SCORES),
              "ccs_intervals": pl.DataFrame(intervals, schema=CCS_INTERVALS),
              "score_agreement": pl.DataFrame(agreement, schema=SCORE_AGREEMENT)}
    for name, df in frames.items():
        df.write_parquet(run / "tables" / f"{name}.parquet")
    return frames
