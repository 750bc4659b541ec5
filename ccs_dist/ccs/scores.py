"""Labels + judgments -> CCS per head, CCS@K per model, head categories; agreement between verdicts.

Pure table arithmetic (polars/numpy): no HTTP, no ray, no CLI.

CCS(h) = number of the head's descriptions judged aligned with its label (0..5). With several judges a
description is aligned when a strict majority of the judges say so; its verdict is failed (null) when
no more than half the judges gave a valid verdict. A head with any failed verdict is flagged, keeps
the count of its valid aligned verdicts as ``ccs`` (a lower bound), gets category ``other`` and is
left out of CCS@K, whose rows carry the number of heads counted and flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from ccs_dist.artifacts.schemas import CCS_AT_K_SCHEMA, trunk_heads
from ccs_dist.core.errors import UserError
from pathlib import Path

HEAD = ["model", "layer", "head"]
DESC = HEAD + ["rank"]


CATEGORIES = ("high", "moderate", "low", "other")  # the one home of head categories and their thresholds


@dataclass(frozen=True)
class CategoryThresholds:
    """high: CCS == high; moderate: CCS == moderate; low: CCS <= low; anything else: other."""

    high: int = 5
    moderate: int = 3
    low: int = 1

    def __post_init__(self):
        if not (self.low < self.moderate < self.high):
            raise ValueError(f"category thresholds need low < moderate < high, got {self.low}, {self.moderate}, {self.high}")

    def category(self, ccs: int | None, flagged: bool = False) -> str:
        """The category of one head: ``other`` when flagged or unscored."""
        if flagged or ccs is None:
            return "other"
        return "high" if ccs == self.high else "moderate" if ccs == self.moderate else "low" if ccs <= self.low else "other"

    def describe(self) -> str:
        """``high = 5, moderate = 3, low ≤ 1``: the thresholds as a reader sees them."""
        return f"high = {self.high}, moderate = {self.moderate}, low ≤ {self.low}"


PAPER_THRESHOLDS = CategoryThresholds()


def read_ccs_table(path) -> pl.DataFrame | None:
    """The ``ccs`` table at ``path`` (None when no path is given); a missing file is a user error."""
    if not path:
        return None
    path = Path(path)
    if not path.is_file():
        raise UserError(f"ccs table {path} not found; run `ccs-dist score` first or drop --ccs")
    return pl.read_parquet(path)


def majority_verdicts(judgments: pl.DataFrame) -> pl.DataFrame:
    """judgments (one row per description and judge) -> one row per description.

    Columns: model, layer, head, rank, text, label, aligned (bool or null), n_judges, n_valid.
    """
    n_judges = judgments["judge"].n_unique()
    return (
        judgments.group_by(DESC, maintain_order=True)
        .agg(
            pl.col("text").first(),
            pl.col("label").first(),
            pl.col("aligned").cast(pl.Int32).sum().alias("n_aligned"),
            pl.col("aligned").is_not_null().sum().alias("n_valid"),
        )
        .with_columns(
            pl.lit(n_judges).alias("n_judges"),
            pl.when(pl.col("n_valid") * 2 > n_judges)
            .then(pl.col("n_aligned") * 2 > pl.col("n_valid"))
            .otherwise(None)
            .alias("aligned"),
        )
        .drop("n_aligned")
        .sort(DESC)
    )


def ccs_table(labels: pl.DataFrame, judgments: pl.DataFrame, thresholds: CategoryThresholds = CategoryThresholds()) -> pl.DataFrame:
    """Columns: model, layer, head, label, ccs (0..n), n_descriptions, n_failed, flagged, category."""
    per_desc = majority_verdicts(judgments)
    per_head = per_desc.group_by(HEAD).agg(
        pl.col("aligned").cast(pl.Int32).sum().fill_null(0).alias("ccs"),
        pl.len().alias("n_descriptions"),
        pl.col("aligned").is_null().sum().alias("n_failed"),
    )
    t = thresholds
    out = (
        labels.select(HEAD + ["label"])
        .join(per_head, on=HEAD, how="left")
        .with_columns(
            pl.col("ccs").fill_null(0).cast(pl.Int64),
            pl.col("n_descriptions").fill_null(0).cast(pl.Int64),
            pl.col("n_failed").fill_null(0).cast(pl.Int64),
        )
        .with_columns(flagged=(pl.col("n_failed") > 0) | pl.col("label").is_null() | (pl.col("n_descriptions") == 0))
        .with_columns(
            category=pl.when(pl.col("flagged"))
            .then(pl.lit("other"))
            .when(pl.col("ccs") == t.high)
            .then(pl.lit("high"))
            .when(pl.col("ccs") == t.moderate)
            .then(pl.lit("moderate"))
            .when(pl.col("ccs") <= t.low)
            .then(pl.lit("low"))
            .otherwise(pl.lit("other"))
        )
    )
    return out.sort(HEAD)


def ccs_at_k(ccs: pl.DataFrame, max_k: int = 5) -> pl.DataFrame:
    """Columns: model, k (0..max_k), fraction (of unflagged heads with CCS == k), n_heads, n_flagged.

    Per model the fractions sum to 1 unless every head is flagged (then they are null). Trunk heads only: the
    units of an attention pooling (``unit`` column) keep their CCS in the ccs table.
    """
    rows = []
    for (model,), g in trunk_heads(ccs).group_by("model", maintain_order=True):
        ok = g.filter(~pl.col("flagged"))
        n_ok, n_flag = ok.height, g.height - ok.height
        counts = ok["ccs"].to_numpy()
        for k in range(max_k + 1):
            frac = float((counts == k).sum() / n_ok) if n_ok else None
            rows.append({"model": model, "k": k, "fraction": frac, "n_heads": n_ok, "n_flagged": n_flag})
    return pl.DataFrame(rows, schema=CCS_AT_K_SCHEMA).sort(["model", "k"])


# -- agreement ---------------------------------------------------------------------------------------


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two label vectors of equal length (nan when chance agreement is 1)."""
    a, b = np.asarray(a), np.asarray(b)
    cats = np.union1d(a, b)
    po = float((a == b).mean())
    pe = float(sum((a == c).mean() * (b == c).mean() for c in cats))
    return float("nan") if pe == 1.0 else (po - pe) / (1.0 - pe)


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean of their positions), 1-based."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=float)
    sx = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sx[j + 1] == sx[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of average ranks (nan when either side is constant)."""
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(np.sqrt((ra**2).sum() * (rb**2).sum()))
    return float("nan") if den == 0 else float((ra * rb).sum() / den)


def kendall_tau_b(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b, which corrects for ties (O(n^2) pairs; n is a few thousand at most)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(len(a), k=1)
    da, db = da[iu], db[iu]
    s = float((da * db).sum())
    den = float(np.sqrt((da != 0).sum() * (db != 0).sum()))
    return float("nan") if den == 0 else s / den


def agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """kappa, rho, tau and raw agreement between two aligned vectors (0/1 verdicts or CCS values)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"agreement needs two 1-d vectors of one length, got {a.shape} and {b.shape}")
    return {
        "n": int(len(a)),
        "raw_agreement": float((a == b).mean()) if len(a) else float("nan"),
        "cohen_kappa": cohen_kappa(a, b),
        "spearman_rho": spearman_rho(a, b),
        "kendall_tau": kendall_tau_b(a, b),
    }


def agreement_report(pairs: pl.DataFrame) -> pl.DataFrame:
    """pairs: model, layer, head, rank, a (bool), b (bool) with no nulls.

    Returns rows (level, n, raw_agreement, cohen_kappa, spearman_rho, kendall_tau) for level
    ``verdict`` (per description) and ``ccs`` (per head: counts of aligned descriptions).
    """
    a = pairs["a"].cast(pl.Int64).to_numpy()
    b = pairs["b"].cast(pl.Int64).to_numpy()
    per_head = pairs.group_by(HEAD).agg(pl.col("a").cast(pl.Int64).sum(), pl.col("b").cast(pl.Int64).sum()).sort(HEAD)
    rows = [
        {"level": "verdict", **agreement(a, b)},
        {"level": "ccs", **agreement(per_head["a"].to_numpy(), per_head["b"].to_numpy())},
    ]
    return pl.DataFrame(rows)
