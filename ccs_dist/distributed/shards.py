"""The shards of one model's stage (``Stage.shards``), handed to that model's workers from a queue.

A model in a sharded stage gets its own worker plus helper workers (``resources.shard_workers`` in all),
each placed wherever the cluster has room; a worker takes the next shard once its model is loaded and again
whenever it finishes one. A helper that dies (its node lost) gives its shard back to the queue, where the
next free worker takes it; the model's own worker is restarted by Ray and retries its shard itself. Helpers
are released as soon as the queue is empty, so their resources serve other models. When every shard is
done, the stage itself runs on the model's worker and merges them (``Stage.run`` reads the shards).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import ray


@dataclass
class ShardPhase:
    plan: object  # the job layer's ModelPlan
    stage: object  # the chain's Stage
    main: object  # the model's own worker (restarted by Ray)
    queue: deque = field(default_factory=deque)
    helpers: list = field(default_factory=list)
    idle: list = field(default_factory=list)
    in_flight: int = 0
    done: int = 0
    total: int = 0

    @property
    def finished(self) -> bool:
        return self.done == self.total

    def next_for(self, actor):
        """The next shard for a free ``actor`` (None: nothing queued; the actor is idle or released)."""
        if self.queue:
            self.in_flight += 1
            return self.queue.popleft()
        if actor is self.main:
            self.idle.append(actor)
        else:
            self.release(actor)
        return None

    def give_back(self, index: int) -> list:
        """A lost helper's shard back in the queue; -> the idle workers that may take it now."""
        self.in_flight -= 1
        self.queue.appendleft(index)
        idle, self.idle = self.idle, []
        return idle

    def release(self, actor) -> None:
        if actor in self.helpers:
            self.helpers.remove(actor)
            ray.kill(actor)

    def release_helpers(self) -> None:
        for actor in list(self.helpers):
            self.release(actor)
