"""Gold (description, label, fits) pairs whose truth follows from the toy world's construction, and a judge's
agreement with them: the judge validation every score run reports.

``data/gold_pairs_v1.csv`` is frozen (its sha256 is pinned by a test): descriptions naming one toy factor value
(colour, shape, position, size, background texture) in phrasings written for this file, lines of other topics,
and labels naming a toy factor in three wordings or another concept. A pair fits iff the description's factor is
the one its label names. Strata: ``same_factor`` (fits), ``other_factor`` (a toy line, another factor's label),
``off_topic`` (an off-topic line and a toy label, or a toy line and an off-topic label). No gold description or
label is in the default pool, its family names (what the offline judge is calibrated on) or the toy pool.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from ccs_dist.artifacts.schemas import JUDGE_VALIDATION_SCHEMA
from ccs_dist.ccs.verdict_stats import verdict_agreement
from ccs_dist.core.errors import UserError
from ccs_dist.llm.backends import Judge, Verdict

GOLD_PATH = Path(__file__).parent / "data" / "gold_pairs_v1.csv"
GOLD_SCHEMA = {"description": pl.String, "label": pl.String, "fits": pl.Boolean, "stratum": pl.String}
STRATA = ("same_factor", "other_factor", "off_topic")
HEAD_SIZE = 5  # descriptions per judge call, as a head's five spans are judged


def gold_fingerprint(path: Path = GOLD_PATH) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load_gold_pairs(path: Path = GOLD_PATH) -> pl.DataFrame:
    """The gold pairs: description, label, fits (bool), stratum; in file order."""
    df = pl.read_csv(path, schema_overrides={"fits": pl.Int64})
    return df.with_columns(pl.col("fits") == 1).select(list(GOLD_SCHEMA))


def sample_gold(pairs: pl.DataFrame, n: int, seed: int = 0) -> pl.DataFrame:
    """At most ``n`` pairs, stratified: each stratum keeps its share (rounded, at least one while n allows), drawn
    with ``seed``; all pairs when n >= their number."""
    if n < 0:
        raise UserError(f"the number of gold pairs must be >= 0, got {n}")
    if n >= pairs.height:
        return pairs
    rng = np.random.default_rng(seed)
    sizes = pairs.group_by("stratum", maintain_order=True).len()
    quota = {s: max(1, round(n * c / pairs.height)) for s, c in sizes.iter_rows()}
    while sum(quota.values()) > n:  # rounding up may overshoot: trim the largest quota
        quota[max(quota, key=quota.get)] -= 1
    keep = []
    for s, q in quota.items():
        idx = np.flatnonzero((pairs["stratum"] == s).to_numpy())
        keep += sorted(rng.choice(idx, size=min(q, len(idx)), replace=False).tolist())
    return pairs[sorted(keep)]


async def judge_pairs(judge: Judge, pairs: pl.DataFrame) -> list[Verdict]:
    """The judge's verdict on every pair: pairs grouped by label, in calls of at most :data:`HEAD_SIZE` descriptions."""
    out: list[Verdict | None] = [None] * pairs.height
    calls: list[tuple[list[int], list[str], str]] = []
    by_label: dict[str, list[int]] = {}
    for i, lab in enumerate(pairs["label"].to_list()):
        by_label.setdefault(lab, []).append(i)
    texts = pairs["description"].to_list()
    for lab, idx in by_label.items():
        for s in range(0, len(idx), HEAD_SIZE):
            chunk = idx[s : s + HEAD_SIZE]
            calls.append((chunk, [texts[i] for i in chunk], lab))
    answers = await asyncio.gather(*(judge.judge(d, lab) for _, d, lab in calls))
    for (chunk, _, _), verdicts in zip(calls, answers):
        for i, v in zip(chunk, verdicts):
            out[i] = v
    return [v if v is not None else Verdict(None, "no verdict") for v in out]


def validation_row(judge_name: str, pairs: pl.DataFrame, verdicts: Sequence[Verdict], seed: int = 0) -> dict:
    """One row of the ``judge_validation`` table: agreement over the pairs with a valid verdict, rates per stratum."""
    ok = np.array([v.aligned is not None for v in verdicts], bool)
    pred = np.array([bool(v.aligned) for v in verdicts], bool)
    truth, stratum = pairs["fits"].to_numpy(), pairs["stratum"].to_numpy()
    row = {"judge": judge_name, "gold": gold_fingerprint(), "n_pairs": pairs.height, "n_failed": int((~ok).sum()),
           **verdict_agreement(truth[ok], pred[ok], seed=seed)}
    for s in ("other_factor", "off_topic"):
        m = ok & (stratum == s) & ~truth
        row[f"fpr_{s}"] = float(pred[m].mean()) if m.any() else float("nan")
    return row


def gold_sample(n: int, seed: int = 0) -> pl.DataFrame:
    """The shipped gold pairs, at most ``n`` of them (stratified; 0: none, no validation)."""
    return sample_gold(load_gold_pairs(), n, seed)


def validation_table(judges: Sequence[Judge], pairs: pl.DataFrame, per_judge: Sequence[Sequence[Verdict]],
                     seed: int = 0) -> pl.DataFrame:
    """The ``judge_validation`` table: one row per judge scored on ``pairs`` (empty when no pair was judged)."""
    rows = [validation_row(j.name, pairs, v, seed) for j, v in zip(judges, per_judge)] if pairs.height else []
    return pl.DataFrame(rows, schema=JUDGE_VALIDATION_SCHEMA)


def validate_judges(judges: Sequence[Judge], pairs: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """Score every judge on ``pairs`` now (offline judges, or clients closed by the caller)."""
    async def run():
        return await asyncio.gather(*(judge_pairs(j, pairs) for j in judges))

    return validation_table(judges, pairs, asyncio.run(run()) if pairs.height else [], seed)


def validation_summary(table: pl.DataFrame, n_pairs: int, cost: dict) -> dict:
    """What the run summary says: validated or not, each judge's kappa and interval, what the gold pairs cost."""
    return {
        "validated": table.height > 0 and bool(table["n"].min() > 0), "gold": gold_fingerprint(), "gold_pairs": n_pairs,
        **{k: cost.get(k, 0) for k in ("misses", "requests", "cost_usd")},
        "judges": {r["judge"]: {k: r[k] for k in ("n", "n_failed", "kappa", "kappa_lo", "kappa_hi", "fpr", "fnr")}
                   for r in table.iter_rows(named=True)},
    }
