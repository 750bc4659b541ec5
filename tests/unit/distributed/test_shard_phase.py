"""The shard queue's bookkeeping (no Ray): queued shards first, then a straggler's second copy; the first copy
to finish wins; a lost worker's shard goes back to the queue only when no other copy runs."""

from __future__ import annotations

from collections import deque

import pytest

pytest.importorskip("ray")

from ccs_dist.distributed.shards import STRAGGLER_FACTOR, STRAGGLER_MIN_DONE, ShardPhase  # noqa: E402


def _phase(n: int) -> ShardPhase:
    return ShardPhase(plan=None, stage=None, main="main", queue=deque(range(n)), total=n)


def test_queued_shards_first_then_waiting_until_one_straggles():
    phase = _phase(5)
    for i, actor in enumerate(("a", "b", "c", "d", "e")):
        assert phase.next_for(actor, now=0.0) == i
    for i, actor in zip(range(STRAGGLER_MIN_DONE), ("a", "b", "c")):
        assert phase.finish(i, actor, now=10.0) == []  # no other copy to stop
    assert phase.next_for("a", now=10.0) is None and phase.idle == ["a"]  # 10 s each: nobody straggles yet
    late = STRAGGLER_FACTOR * 10.0 + 1
    assert phase.next_for("a", now=late) == 3  # the longest-running shard gets a second copy
    assert phase.next_for("b", now=late) == 4
    assert phase.next_for("c", now=late) is None  # every running shard already has two copies
    assert phase.finish(3, "a", now=late + 5) == ["d"]  # the copy wins: the slow one is to stop
    assert phase.finish(3, "d", now=late + 60) is None  # a late result of a won shard is ignored
    assert phase.finish(4, "e", now=late + 6) == ["b"]
    assert phase.finished and sorted(phase.done) == [0, 1, 2, 3, 4]


def test_no_second_copy_before_enough_shards_finished():
    phase = _phase(3)
    for i, actor in enumerate(("a", "b", "c")):
        phase.next_for(actor, now=0.0)
    phase.finish(0, "a", now=1.0)
    assert phase.next_for("a", now=1000.0) is None  # one finished shard is no median to judge by


def test_lost_worker_requeues_only_a_shard_no_other_copy_runs():
    phase = _phase(2)
    assert phase.next_for("a", now=0.0) == 0 and phase.next_for("b", now=0.0) == 1
    assert phase.give_back(0, "a") and list(phase.queue) == [0]
    phase.running[1]["c"] = 5.0  # a second copy of shard 1 runs on c
    assert not phase.give_back(1, "b") and list(phase.queue) == [0]  # c's copy carries on
