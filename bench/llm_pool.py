"""Throughput of the LLM client pool against a rate-limited loopback server, then a cached re-run.

Loopback server (own process): 100 ms latency, 600 requests/min limit (429 + Retry-After beyond it).
Pool configured to the same 600/min. Phase 1 scores 64 heads (one label + five pair verdicts each:
384 requests, >= 30 s at that limit) into an empty cache and reports achieved requests/min and the
429s the server had to send. Phase 2 re-runs the same 64 heads on the warm cache: seconds and
requests sent (target 0). Last printed line: JSON.

    python bench/llm_pool.py
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from ccs_dist.llm import EndpointConfig, ScoreConfig, score_spans  # noqa: E402

RPM, LATENCY_S, N_HEADS = 600, 0.1, 64


def spans_64() -> pl.DataFrame:
    from ccs_dist.text.pool import default_pool

    pool = default_pool()
    rng = random.Random(0)
    rows = []
    for i in range(N_HEADS):
        for r, t in enumerate(rng.sample(pool.texts, 5)):
            rows.append({"model": "bench/model", "layer": i // 16, "head": i % 16, "rank": r, "text": t, "variance": 1.0})
    return pl.DataFrame(rows)


def main() -> int:
    logging.basicConfig(level=os.environ.get("BENCH_LOG", "WARNING"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.support.loopback", "--latency", str(LATENCY_S), "--rpm", str(RPM)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        base_url = server.stdout.readline().split()[1]
        os.environ["BENCH_KEY"] = "sk-bench"
        ep = EndpointConfig(model="loopback-1", base_url=base_url, api_key_env="BENCH_KEY", rpm=RPM, tpm=10_000_000,
                            max_concurrency=16, timeout_s=10, backoff_base_s=0.1, backoff_max_s=2)
        with tempfile.TemporaryDirectory() as d:
            cfg = ScoreConfig(labeler=ep, judges=(ep,), cache_dir=d, show_progress=False)
            spans = spans_64()
            t0 = time.monotonic()
            r1 = score_spans(spans, cfg)
            t1 = time.monotonic() - t0
            srv1 = json.load(urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/_stats"))
            t0 = time.monotonic()
            r2 = score_spans(spans, cfg)
            t2 = time.monotonic() - t0
            srv2 = json.load(urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/_stats"))
    finally:
        server.terminate()
        server.wait(timeout=10)
    achieved = r1.stats["requests"] / t1 * 60.0
    result = {
        "limit_rpm": RPM,
        "latency_s": LATENCY_S,
        "phase1_seconds": round(t1, 2),
        "phase1_requests": r1.stats["requests"],
        "achieved_rpm": round(achieved, 1),
        "fraction_of_limit": round(achieved / RPM, 4),
        "server_429_caused_by_us": srv1["rate_limited"],
        "cached_rerun_heads": N_HEADS,
        "cached_rerun_seconds": round(t2, 3),
        "cached_rerun_requests_client": r2.stats["requests"],
        "cached_rerun_requests_server": srv2["requests"] - srv1["requests"],
        "tables_identical": all(getattr(r1, n).equals(getattr(r2, n)) for n in ("labels", "judgments", "ccs", "ccs_at_k")),
    }
    print(f"pool: {result['achieved_rpm']} req/min of {RPM} allowed ({result['fraction_of_limit']:.1%}) over "
          f"{result['phase1_seconds']} s, {result['server_429_caused_by_us']} x 429; cached re-run of {N_HEADS} heads: "
          f"{result['cached_rerun_seconds']} s, {result['cached_rerun_requests_server']} requests")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
