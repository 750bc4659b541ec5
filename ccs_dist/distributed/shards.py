"""The shards of one model's stage (``Stage.shards``), handed to that model's workers from a queue.

A model in a sharded stage gets its own worker plus helper workers (``resources.shard_workers`` in all),
each placed wherever the cluster has room; a worker takes the next shard once its model is loaded and again
whenever it finishes one. A helper that dies (its node lost) gives its shard back to the queue, where the
next free worker takes it; the model's own worker is restarted by Ray and retries its shard itself.

Stragglers: once the queue is empty, a free worker takes a second copy of a shard that has run longer than
``STRAGGLER_FACTOR`` times the median of the finished ones (after ``STRAGGLER_MIN_DONE`` have finished, and
``STRAGGLER_MIN_S`` at least).
The first copy to finish wins (a shard is deterministic, so either gives the same files); the other copy's
worker is stopped (the model's own worker is restarted by Ray). Helpers stay while shards run, to take such
copies, and are released when every shard is done. Then the stage itself runs on the model's worker and
merges them (``Stage.run`` reads the shards).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic

import ray
from ray.actor import ActorHandle

from ccs_dist.stages.plans import P

if TYPE_CHECKING:  # annotations only: the chain imports torch
    from ccs_dist.stages.chain import Stage

STRAGGLER_FACTOR = 3.0
STRAGGLER_MIN_DONE = 3
STRAGGLER_MIN_S = 5.0  # never a second copy sooner: shards reused from disk finish in milliseconds


@dataclass
class ShardPhase(Generic[P]):
    plan: P  # the job layer's ModelPlan
    stage: Stage
    main: ActorHandle  # the model's own worker (restarted by Ray)
    queue: deque[int] = field(default_factory=deque)
    helpers: list[ActorHandle] = field(default_factory=list)
    idle: list[ActorHandle] = field(default_factory=list)
    running: dict[int, dict[ActorHandle, float]] = field(default_factory=dict)  # shard -> {actor: started at (driver clock)}
    finished_s: list[float] = field(default_factory=list)  # how long each finished shard ran
    done: set[int] = field(default_factory=set)
    total: int = 0

    @property
    def finished(self) -> bool:
        return len(self.done) == self.total

    def next_for(self, actor: ActorHandle, now: float) -> int | None:
        """The next shard for a free ``actor``: a queued one, else a straggler's second copy; None: the actor
        waits (idle) until a shard is given back or one straggles."""
        index = self.queue.popleft() if self.queue else self.straggler(now)
        if index is None:
            if actor not in self.idle:
                self.idle.append(actor)
            return None
        if actor in self.idle:
            self.idle.remove(actor)
        self.running.setdefault(index, {})[actor] = now
        return index

    def straggler(self, now: float) -> int | None:
        """The shard, run by one worker only, that has run longest beyond ``STRAGGLER_FACTOR`` x the median
        finished shard (None before ``STRAGGLER_MIN_DONE`` shards finished)."""
        if len(self.finished_s) < STRAGGLER_MIN_DONE:
            return None
        limit = max(STRAGGLER_MIN_S, STRAGGLER_FACTOR * statistics.median(self.finished_s))
        late = [(started, index) for index, copies in self.running.items() if len(copies) == 1
                for started in copies.values() if now - started > limit]
        return min(late)[1] if late else None

    def take_idle(self) -> list[ActorHandle]:
        idle, self.idle = self.idle, []
        return idle

    def finish(self, index: int, actor: ActorHandle, now: float) -> list[ActorHandle] | None:
        """``actor`` finished shard ``index``. -> None when another copy had won already (ignore this one),
        else the workers still running a copy of it (to stop)."""
        copies = self.running.pop(index, {})
        started = copies.pop(actor, None)
        if index in self.done:
            return None
        self.done.add(index)
        if started is not None:
            self.finished_s.append(now - started)
        return list(copies)

    def give_back(self, index: int, actor: ActorHandle) -> bool:
        """A lost worker's copy of ``index``: back in the queue unless another copy still runs or it is done.
        -> whether it was requeued."""
        copies = self.running.get(index, {})
        copies.pop(actor, None)
        if copies or index in self.done:
            return False
        self.running.pop(index, None)
        self.queue.appendleft(index)
        return True

    def stop(self, actor: ActorHandle) -> None:
        """Stop a worker's copy of a shard that another worker finished first: a helper is released, the
        model's own worker killed and restarted by Ray (its stage must not wait behind the slow copy)."""
        for copies in self.running.values():
            copies.pop(actor, None)
        if actor is self.main:
            ray.kill(actor, no_restart=False)
        else:
            self.release(actor)

    def forget(self, actor: ActorHandle) -> None:
        """A helper that died (its node lost): no longer one of this phase's workers."""
        for pool in (self.idle, self.helpers):
            if actor in pool:
                pool.remove(actor)

    def release(self, actor: ActorHandle) -> None:
        if actor in self.idle:
            self.idle.remove(actor)
        if actor in self.helpers:
            self.helpers.remove(actor)
            ray.kill(actor)

    def release_helpers(self) -> None:
        for actor in list(self.helpers):
            self.release(actor)
