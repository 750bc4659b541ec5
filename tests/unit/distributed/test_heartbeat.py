"""The Ray driver's heartbeat tells stages that run from stages that wait for a worker."""

from __future__ import annotations

from types import SimpleNamespace

from ccs_dist.distributed.executor import heartbeat


def test_running_and_queued_are_reported_apart():
    chain = ("spans", "score", "evaluate")
    a = SimpleNamespace(key="ViT-B-32/random-init", done={"spans": 1}, stages=chain)
    b = SimpleNamespace(key="ccs-tiny/random-init", done={}, stages=chain)
    c = SimpleNamespace(key="ccs-toy/x", done={"spans": 1, "score": 1}, stages=chain)
    pending = [(a, "score", 100.0), (b, "spans", 90.0), (c, "evaluate", 108.0)]
    started = {("ViT-B-32/random-init", "score"): 104.0,
               ("ccs-tiny/random-init", "spans"): 10.0,  # an earlier attempt, before this submission: not this call
               }
    line = heartbeat([a, b, c], pending, started, now=110.0)
    assert line == ("3/9 stages done; running: ViT-B-32/random-init score 6s; "
                    "queued: ccs-tiny/random-init spans 20s, ccs-toy/x evaluate 2s")
    assert heartbeat([a], [], {}, now=1.0) == "1/3 stages done; running: -; queued: -"
