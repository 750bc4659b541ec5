"""Any judge (the offline one, any OpenAI-compatible endpoint) scored on the shipped gold pairs in one call: the
``judge_validation`` table without a run (``ccs-dist judge-check``). Endpoint answers go through the same cache
as a run's, so a later run with the same judge asks nothing again."""

from __future__ import annotations

import asyncio
import time

import polars as pl

from ccs_dist.llm.config import ScoreConfig
from ccs_dist.llm.gold import gold_sample, judge_pairs, validation_summary, validation_table
from ccs_dist.llm.score import judge_backends


def check_judges(config: ScoreConfig, seed: int = 0) -> tuple[pl.DataFrame, dict]:
    """(judge_validation table, summary with what the pairs cost) of every judge of ``config`` on
    ``config.judge_gold_pairs`` gold pairs."""
    t0 = time.monotonic()
    judges, clients = judge_backends(config)
    gold = gold_sample(config.judge_gold_pairs, seed)
    for j in judges:
        if hasattr(j, "prepare"):  # the offline judges: one batched embedding pass
            j.prepare(gold["description"].to_list())

    async def run():
        try:
            return list(await asyncio.gather(*(judge_pairs(j, gold) for j in judges)))
        finally:
            for c in clients:
                await c.aclose()

    try:
        verdicts = asyncio.run(run()) if gold.height else []
    finally:
        for c in clients:
            if c.cache is not None:
                c.cache.close()
    cost = {k: sum(c.stats.as_dict()[k] for c in clients) for k in ("misses", "requests", "cost_usd", "hits")}
    table = validation_table(judges, gold, verdicts, seed)
    summary = {**validation_summary(table, gold.height, cost), "hits": cost["hits"], "seconds": round(time.monotonic() - t0, 3)}
    return table, summary
