"""Run the planned stages of the full grid on Ray and record each as it finishes.

Each model walks the stage chain of :mod:`ccs_dist.stages.chain` (spans -> LLM score -> evaluate ->
attribution when enabled) one stage at a time, model stages on its own actor and the score stage on the LLM
actor, so models proceed concurrently and a model's evaluation starts as soon as its own scores are back;
``resources.model_workers`` caps the model actors alive at once, shard helpers included. The driver waits on every pending ref, writes each finished stage to the stage store at once
(resume), prints a one-line progress every few seconds, and releases a model's actor when its graph is
done. Actors restart and their calls retry when a worker dies. A stage that splits into shards
(``probe.shards``) first has its shards done by the model's workers from a queue (:mod:`.shards`; a straggling
shard gets a second copy), then runs.
The LLM actor stays on the driver's node, so its disk cache under ``cache_dir`` never moves.

The driver's books are a :class:`_Scheduler`, one method per event; it reads the job layer's plans and books
through the protocols of :mod:`ccs_dist.stages.plans` (this layer never imports the job layer).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

import ray
from ray import ObjectRef
from ray.actor import ActorHandle

from ccs_dist.core.errors import UserError
from ccs_dist.distributed.actors import LLMWorker, ModelWorker, StageBoard, pinned_to_this_node, shard_label
from ccs_dist.distributed.shards import STRAGGLER_FACTOR, ShardPhase
from ccs_dist.stages.plans import Books, P, Plan

if TYPE_CHECKING:  # annotations only: the chain imports torch, which the driver need not load to schedule
    from ccs_dist.stages.chain import Stage
    from ccs_dist.stages.plans import Inputs

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 10.0
STRAGGLER_CHECK_S = 1.0  # how often workers waiting on a stage's last shards look for a straggler


def _loopback_only() -> None:
    """Make the Ray instance this driver starts reachable from this machine only.

    Ray 2.60 turns ``_node_ip_address="127.0.0.1"`` into the host's address and binds gcs, raylet and
    workers to every interface; its single-machine mode (what it uses on macOS/Windows) binds them all
    to 127.0.0.1. The metrics agent (an unauthenticated Prometheus port) is switched off. Both are
    environment settings so that the processes Ray starts inherit them.
    """
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ["RAY_enable_metrics_collection"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at call time; ray was imported before the variable was set


def _connect(address: str | None) -> None:
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address is None:
        _loopback_only()
    from ray._private.runtime_env.constants import RAY_JOB_CONFIG_JSON_ENV_VAR

    # Settings only: an API key never travels in a runtime env (Ray stores and logs those). The LLM worker
    # reads it from its node's environment: inherited when this driver starts Ray, else the cluster's.
    # CCS_DIST_LOCAL_CACHE is each node's own (its mirror of a remote storage root): never the driver's.
    env = {k: v for k, v in os.environ.items() if (k.startswith("CCS_") and k != "CCS_DIST_LOCAL_CACHE") or k == "HF_HUB_OFFLINE"}
    if RAY_JOB_CONFIG_JSON_ENV_VAR in os.environ:
        env = {}  # a submitted job: its runtime env already reaches every worker, and Ray refuses to merge two
    if not (sys.stdout.isatty() and sys.stderr.isatty()):  # a log file: no ANSI colour codes
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # around the worker lines Ray forwards
        logging.getLogger("ray._private.worker").addFilter(_strip_ansi)  # in "View the dashboard at ..."
    try:
        ray.init(address=address, runtime_env={"env_vars": env} if env else None, log_to_driver=True,
                 include_dashboard=False if address is None else None)
    except ConnectionError as e:
        raise UserError(f"cannot reach the Ray cluster at {address} ({e}): start it (ray start --head) or run with --local") from e


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _strip_ansi(record: logging.LogRecord) -> bool:
    if "\x1b[" in record.getMessage():
        record.msg, record.args = _ANSI.sub("", record.getMessage()), None
    return True


@dataclass
class _StageCall(Generic[P]):
    """A stage submitted whole to a worker (its model's actor, or the LLM actor)."""

    plan: P
    stage: Stage
    inputs: Inputs
    submitted: float  # time.time()


@dataclass
class _ShardCall(Generic[P]):
    """A call to a worker of a sharded stage: shard ``index``, or (None) "say when your model is loaded"."""

    phase: ShardPhase[P]
    actor: ActorHandle
    index: int | None
    submitted: float  # time.time()


class _Scheduler(Generic[P]):
    """The driver's side of :func:`run_ray`: what is submitted, which model actors are alive, which plans wait
    for an actor slot; one method per event (a stage or shard finished, a worker freed or lost, a tick)."""

    def __init__(self, books: Books[P], plans: Sequence[P], show_progress: bool):
        self.books, self.plans, self.show_progress = books, plans, show_progress
        self.res = books.spec.resources
        self.threads = max(1, int(self.res.cpus_per_model))
        self.board_name = f"ccs-dist-stage-board-{os.getpid()}-{time.time_ns()}"
        self.board = StageBoard.options(name=self.board_name).remote()
        self.llm = LLMWorker.options(scheduling_strategy=pinned_to_this_node()).remote(self.board_name)
        self.stage_calls: dict[ObjectRef, _StageCall[P]] = {}
        self.shard_calls: dict[ObjectRef, _ShardCall[P]] = {}
        self.workers: dict[str, ActorHandle] = {}  # model key -> its actor, alive from its first model stage to its last
        self.waiting: list[P] = []  # plans whose next stage needs a model actor while model_workers are alive
        self.phases: dict[str, ShardPhase[P]] = {}  # model key -> the shards of its current stage
        self.sharded: set[tuple[str, str]] = set()  # (model key, stage) whose shards are all done

    def run(self) -> None:
        for plan in self.plans:  # actors beyond the cluster's resources wait in Ray's queue until one is released
            self.submit_next(plan)
        last = time.perf_counter()
        while self.stage_calls or self.shard_calls:
            idle_workers = any(phase.idle for phase in self.phases.values())  # they may take a straggler's copy
            ready, _ = ray.wait([*self.stage_calls, *self.shard_calls], num_returns=1,
                                timeout=STRAGGLER_CHECK_S if idle_workers else PROGRESS_EVERY_S)
            self.look_for_stragglers()
            for ref in ready:
                if ref in self.shard_calls:
                    self.shard_returned(ref)
                else:
                    self.stage_returned(ref)
            if time.perf_counter() - last >= PROGRESS_EVERY_S or (not ready and not idle_workers):
                last = time.perf_counter()
                log.info("progress: %s", self.progress())
        for worker in self.workers.values():
            ray.kill(worker)
        ray.kill(self.llm)
        ray.kill(self.board)

    # -- submitting ------------------------------------------------------------------------------------------

    def new_worker(self, plan: P, **options: int) -> ActorHandle:
        return ModelWorker.options(num_cpus=self.res.cpus_per_model, num_gpus=self.res.gpus_per_model, **options).remote(
            plan.config, self.threads, self.show_progress, self.board_name)

    def live_actors(self) -> int:
        return len(self.workers) + sum(len(phase.helpers) for phase in self.phases.values())

    def submit_next(self, plan: P) -> None:
        """Submit the next stage of ``plan`` (none while one of its stages or shards runs)."""
        if plan.key in self.phases or any(call.plan is plan for call in self.stage_calls.values()):
            return
        stage = plan.next_stage()
        if stage is None:
            self.plan_done(plan)
            return
        if stage.uses_model and plan.key not in self.workers:
            if self.res.model_workers is not None and self.live_actors() >= self.res.model_workers:
                self.waiting.append(plan)
                return
            self.workers[plan.key] = self.new_worker(plan)
        n_shards = stage.shards(plan.config)
        if n_shards > 1 and (plan.key, stage.name) not in self.sharded:
            self.start_shards(plan, stage, n_shards)
            return
        inputs = plan.inputs(stage)
        assert inputs is not None, "the chain is in dependency order: the next stage's inputs are done"
        actor = self.workers[plan.key] if stage.uses_model else self.llm
        self.stage_calls[actor.run.remote(plan.config, stage.name, inputs)] = _StageCall(plan, stage, inputs, time.time())

    def start_shards(self, plan: P, stage: Stage, n: int) -> None:
        phase = self.phases[plan.key] = ShardPhase(plan, stage, self.workers[plan.key], deque(range(n)), total=n)
        helpers = min(n, self.res.shard_workers or n) - 1
        if self.res.model_workers is not None:  # helpers take model actor slots too; the model's own worker has one
            helpers = max(0, min(helpers, self.res.model_workers - self.live_actors()))
        for _ in range(helpers):  # helpers: not restarted, a lost one's shard is requeued
            phase.helpers.append(self.new_worker(plan, max_restarts=0, max_task_retries=0))
        for actor in (phase.main, *phase.helpers):
            self.await_model(phase, actor)

    def await_model(self, phase: ShardPhase[P], actor: ActorHandle) -> None:
        """``actor`` takes shards once its model is loaded (:meth:`worker_freed`)."""
        self.shard_calls[actor.ready.remote()] = _ShardCall(phase, actor, None, time.time())

    # -- events ----------------------------------------------------------------------------------------------

    def stage_returned(self, ref: ObjectRef) -> None:
        """A whole stage finished: recorded at once (resume); the plan's next stage goes out."""
        call = self.stage_calls.pop(ref)
        with _user_errors():
            output, seconds = ray.get(ref)
        self.books.finish(call.plan, call.stage, call.inputs, output, seconds)
        self.submit_next(call.plan)

    def shard_returned(self, ref: ObjectRef) -> None:
        """A call of a sharded stage's worker returned: a model loaded, a shard done, or the worker lost."""
        call = self.shard_calls.pop(ref)
        try:
            with _user_errors():
                value = ray.get(ref)
        except ray.exceptions.RayActorError:
            if call.actor is call.phase.main:
                raise
            self.helper_lost(call)
            return
        if call.phase.finished:  # a helper that loaded its model after the last shard was done
            call.phase.release(call.actor)
        elif call.index is None:
            self.worker_freed(call.phase, call.actor)
        else:
            record, seconds, node = value
            self.shard_finished(call.phase, call.actor, call.index, record, seconds, node)

    def shard_finished(self, phase: ShardPhase[P], actor: ActorHandle, index: int, record: dict[str, Any],
                       seconds: float, node: str) -> None:
        slower = phase.finish(index, actor, time.time())
        if slower is not None:  # None: another copy had won already
            self.copies_lost(phase, slower)
            self.books.finish_shard(phase.plan, phase.stage, index, record, seconds, node)
        if phase.finished:
            self.shards_done(phase)
        else:
            self.worker_freed(phase, actor)

    def shards_done(self, phase: ShardPhase[P]) -> None:
        """Every shard of the phase is done: its helpers go, and the stage itself runs (it merges them)."""
        phase.release_helpers()
        del self.phases[phase.plan.key]
        self.sharded.add((phase.plan.key, phase.stage.name))
        self.submit_next(phase.plan)
        self.slot_freed()

    def worker_freed(self, phase: ShardPhase[P], actor: ActorHandle) -> None:
        """``actor`` takes the next shard: a queued one, else a straggler's second copy, else it waits (idle)."""
        index = phase.next_for(actor, time.time())
        if index is None:
            return
        if len(phase.running[index]) > 1:
            self.straggler_copied(phase, index)
        ref = actor.run_shard.remote(phase.plan.config, phase.stage.name, index, phase.plan.inputs(phase.stage))
        self.shard_calls[ref] = _ShardCall(phase, actor, index, time.time())

    def straggler_copied(self, phase: ShardPhase[P], index: int) -> None:
        log.warning("%s: %s shard %d runs %.0f s, over %.0fx the median shard: a second copy starts",
                    phase.plan.key, phase.stage.name, index, time.time() - min(phase.running[index].values()),
                    STRAGGLER_FACTOR)

    def look_for_stragglers(self) -> None:
        """A tick: every idle worker looks again for a shard (a straggler may have passed its limit)."""
        for phase in list(self.phases.values()):
            for idle in phase.take_idle():
                self.worker_freed(phase, idle)

    def copies_lost(self, phase: ShardPhase[P], actors: list[ActorHandle]) -> None:
        """Stop the slower copies of a shard another worker finished first; their results are not awaited."""
        for ref, call in list(self.shard_calls.items()):
            if call.phase is phase and call.actor in actors and call.index is not None:
                del self.shard_calls[ref]
        for actor in actors:
            log.info("%s: a slower copy of a shard is stopped (another worker finished it first)", phase.plan.key)
            phase.stop(actor)
            if actor is phase.main:  # restarted by Ray: it takes shards again once its model is loaded
                self.await_model(phase, actor)

    def helper_lost(self, call: _ShardCall[P]) -> None:
        """A helper died (its node lost): its shard goes back to the queue, where a free worker takes it."""
        phase = call.phase
        phase.forget(call.actor)
        if call.index is not None and not phase.finished and phase.give_back(call.index, call.actor):
            log.warning("%s: worker lost during shard %d; the shard goes back to the queue", phase.plan.key, call.index)
            for idle in phase.take_idle():
                self.worker_freed(phase, idle)

    def plan_done(self, plan: P) -> None:
        """The plan's last stage is done: its model actor goes, and a waiting plan may take the slot."""
        if plan.key in self.workers:
            ray.kill(self.workers.pop(plan.key))
            self.slot_freed()

    def slot_freed(self) -> None:
        """Plans that waited for a model actor slot try again."""
        queued, self.waiting = self.waiting, []
        for plan in queued:
            self.submit_next(plan)

    def progress(self) -> str:
        shown: list[tuple[Plan, str, float]] = [(c.plan, c.stage.name, c.submitted) for c in self.stage_calls.values()]
        shown += [(c.phase.plan, shard_label(c.phase.stage.name, c.index), c.submitted)
                  for c in self.shard_calls.values() if c.index is not None]
        return heartbeat(self.plans, shown, _snapshot(self.board), time.time())


def run_ray(state: Books[P], plans: Sequence[P], address: str | None = None, show_progress: bool = True) -> None:
    """Run every plan's remaining stages: ``plans`` walk :data:`ccs_dist.stages.chain.CHAIN` (``next_stage``,
    ``inputs``) and ``state.finish`` records each stage (the job layer's books; this module only schedules)."""
    _connect(address)
    _Scheduler(state, plans, show_progress).run()


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """A stage's UserError reaches the user as itself, not wrapped in Ray's task error."""
    try:
        yield
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if hasattr(e, "cause") else e
        if isinstance(cause, UserError):
            raise cause from None
        raise


def _snapshot(board: ActorHandle) -> dict[tuple[str, str], float]:
    try:
        return ray.get(board.snapshot.remote(), timeout=5)
    except Exception:  # noqa: BLE001 (a heartbeat never stops the job)
        return {}


def heartbeat(plans: Sequence[Plan], pending: Iterable[tuple[Plan, str, float]], started: Mapping[tuple[str, str], float],
              now: float) -> str:
    """``d/n stages done; running: MODEL STAGE 3s; queued: MODEL STAGE 40s``.

    A stage runs once its worker noted its start (``started``, from the stage board) after it was submitted;
    until then it is queued (waiting for a worker slot, for its actor to load the model, or for the LLM
    worker to finish another model's stage).
    """
    running, queued = [], []
    for plan, stage, submitted in pending:
        t = started.get((plan.key, stage))
        if t is not None and t >= submitted - 1.0:  # 1 s of clock skew between processes
            running.append(f"{plan.key} {stage} {max(0.0, now - t):.0f}s")
        else:
            queued.append(f"{plan.key} {stage} {now - submitted:.0f}s")
    done = sum(len(p.done) for p in plans)
    return f"{done}/{sum(len(p.stages) for p in plans)} stages done; running: {', '.join(running) or '-'}; queued: {', '.join(queued) or '-'}"
