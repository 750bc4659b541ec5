"""The LLM pool keeps to its rate limit, not below it: late wake-ups of the limiter's sleeps are made up
(within one bucket's capacity), and a score run starts sending without loading the torch stack."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from ccs_dist.llm import ratelimit
from ccs_dist.llm.ratelimit import RateLimiter, TokenBucket
from tests.support.paths import REPO


def test_late_wakeups_do_not_lower_the_rate(monkeypatch):
    """Every sleep of the limiter ends 20 ms late (a busy event loop): 11 requests at 10/s still take ~1.0 s.
    Before, each late wake-up was lost (the 1-request bucket was full): 10 x 20 ms = 1.2 s."""
    real_sleep = asyncio.sleep

    async def late_sleep(s):
        await real_sleep(s + 0.02)

    monkeypatch.setattr(ratelimit.asyncio, "sleep", late_sleep)

    async def run():
        lim = RateLimiter(rpm=600, tpm=1e9, burst_s=0.1)  # 10/s, burst 1
        t0 = time.monotonic()
        for _ in range(11):
            await lim.acquire(1)
        return time.monotonic() - t0

    assert 0.95 <= asyncio.run(run()) < 1.1


def test_lateness_credit_never_exceeds_one_bucket():
    """A waiter woken long after it was due gets no more than a full bucket beside its own units."""
    b = TokenBucket(rate=10, capacity=1)
    b.take(1)  # empty
    time.sleep(0.3)
    b.take(1, due=b._t + 0.1)  # due after 0.1 s, taken after 0.3 s: 0.2 s (2 units) late
    assert b._level <= 1.0 + 1e-9
    assert b.wait_time(1) == 0 and b.wait_time(2) == 0  # one more now, not two
    b.take(1)
    assert b.wait_time(1) > 0.05


def test_scoring_loads_no_torch():
    """score_spans over the chat backend: importing the spans package for its per-head facts loaded torch and
    open_clip, seconds before the first request (the bench's missing 3-4 s)."""
    code = (
        "import sys, polars as pl\n"
        "from ccs_dist.llm.score import score_spans\n"
        "from ccs_dist.llm import EndpointConfig, ScoreConfig\n"
        "from tests.support.loopback import LoopbackServer\n"
        "rows = [dict(model='m', layer=0, head=0, rank=r, text=t, variance=1.0, requested_rank=5, effective_rank=4,\n"
        "             stability=0.9, span1_stability=1.0) for r, t in enumerate(['a red car', 'a red bus'])]\n"
        "with LoopbackServer() as srv:\n"
        "    ep = EndpointConfig(model='loopback-1', base_url=srv.base_url, api_key_env=None)\n"
        "    r = score_spans(pl.DataFrame(rows), ScoreConfig(labeler=ep, judges=(ep,), cache='bypass',\n"
        "                                                  show_progress=False, judge_gold_pairs=0))\n"
        "assert r.ccs['effective_rank'].to_list() == [4], r.ccs\n"
        "print(sorted(m for m in ('torch', 'open_clip') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
