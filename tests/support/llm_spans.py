"""Span tables and score configs for the scoring-stage tests against the loopback LLM server."""

from __future__ import annotations

import random

import polars as pl

from ccs_dist.llm import EndpointConfig, ScoreConfig

KEY = "sk-loopback-SECRET-7f3a9c"  # the loopback server's API key in these tests (the key_env fixture sets it)


def make_spans(n_heads: int = 48, seed: int = 0) -> pl.DataFrame:
    """n_heads heads of 5 default-pool descriptions each, most drawn from one family."""
    from ccs_dist.text.pool import default_pool

    pool = default_pool()
    fams = sorted(set(pool.families))
    by = {f: [t for t, g in zip(pool.texts, pool.families) if g == f] for f in fams}
    rng = random.Random(seed)
    rows = []
    for i in range(n_heads):
        fam = fams[i % len(fams)]
        texts = rng.sample(by[fam], 5 - i % 3) + rng.sample(pool.texts, i % 3)
        for r, t in enumerate(texts):
            rows.append({"model": "ViT-B-16/laion2b_s34b_b88k", "layer": 8 + i // 12, "head": i % 12, "rank": r, "text": t, "variance": 1.0 / (r + 1)})
    return pl.DataFrame(rows)


def config(base_url: str, cache_dir, key_env: str, **endpoint) -> ScoreConfig:
    kw = dict(model="loopback-1", base_url=base_url, api_key_env=key_env, rpm=60000, tpm=1e8,
              timeout_s=0.5, max_attempts=8, backoff_base_s=0.01, backoff_max_s=0.1)
    ep = EndpointConfig(**{**kw, **endpoint})
    # judge_gold_pairs=0: these tests count the heads' requests; the gold validation has tests of its own
    return ScoreConfig(labeler=ep, judges=(ep,), cache_dir=str(cache_dir), show_progress=False, judge_gold_pairs=0)
