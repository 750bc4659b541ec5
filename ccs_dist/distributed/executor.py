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
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time

import ray

from collections import deque

from ccs_dist.distributed.actors import LLMWorker, ModelWorker, StageBoard, pinned_to_this_node, shard_label
from ccs_dist.distributed.shards import STRAGGLER_FACTOR, ShardPhase
from ccs_dist.core.errors import UserError

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


def run_ray(state, plans, address: str | None = None, show_progress: bool = True) -> None:
    """Run every plan's remaining stages: ``plans`` walk :data:`ccs_dist.stages.chain.CHAIN` (``next_stage``,
    ``inputs``) and ``state.finish`` records each stage (the job layer's books; this module only schedules)."""
    _connect(address)
    res = state.spec.resources
    threads = max(1, int(res.cpus_per_model))
    board_name = f"ccs-dist-stage-board-{os.getpid()}-{time.time_ns()}"
    board = StageBoard.options(name=board_name).remote()
    llm = LLMWorker.options(scheduling_strategy=pinned_to_this_node()).remote(board_name)
    pending: dict = {}  # ref -> (plan, stage, inputs, submitted at)
    workers: dict = {}  # model key -> its actor, alive from its first model stage to its last
    waiting: list = []  # plans whose next stage needs a model actor while model_workers are alive
    shard_refs: dict = {}  # ref -> (phase, actor, shard index or None for "model loaded", submitted at)
    phases: dict = {}  # model key -> its ShardPhase while the shards of its stage run
    sharded: set = set()  # (model key, stage) whose shards are all done

    def new_worker(plan, **options):
        return ModelWorker.options(num_cpus=res.cpus_per_model, num_gpus=res.gpus_per_model, **options).remote(
            plan.config, threads, show_progress, board_name)

    def dispatch(phase, actor):
        index = phase.next_for(actor, time.time())
        if index is not None:
            if index in phase.running and len(phase.running[index]) > 1:
                log.warning("%s: %s shard %d runs %.0f s, over %.0fx the median shard: a second copy starts",
                            phase.plan.key, phase.stage.name, index, time.time() - min(phase.running[index].values()),
                            STRAGGLER_FACTOR)
            ref = actor.run_shard.remote(phase.plan.config, phase.stage.name, index, phase.plan.inputs(phase.stage))
            shard_refs[ref] = (phase, actor, index, time.time())

    def live_actors():
        return len(workers) + sum(len(phase.helpers) for phase in phases.values())

    def admit_waiting():
        """Plans that waited for a model actor slot try again (one was released)."""
        for queued in [waiting.pop(0) for _ in range(len(waiting))]:
            submit_next(queued)

    def start_shards(plan, stage, n):
        phase = phases[plan.key] = ShardPhase(plan, stage, workers[plan.key], deque(range(n)), total=n)
        helpers = min(n, res.shard_workers or n) - 1
        if res.model_workers is not None:  # helpers take model actor slots too; the model's own worker has one
            helpers = max(0, min(helpers, res.model_workers - live_actors()))
        for _ in range(helpers):  # helpers: not restarted, a lost one's shard is requeued
            phase.helpers.append(new_worker(plan, max_restarts=0, max_task_retries=0))
        for actor in (phase.main, *phase.helpers):
            shard_refs[actor.ready.remote()] = (phase, actor, None, time.time())

    def drop_copies(phase, actors):
        """Stop the slower copies of a shard another worker finished first; their results are not awaited."""
        for ref, (p, actor, index, _) in list(shard_refs.items()):
            if p is phase and actor in actors and index is not None:
                del shard_refs[ref]
        for actor in actors:
            log.info("%s: a slower copy of a shard is stopped (another worker finished it first)", phase.plan.key)
            phase.stop(actor)
            if actor is phase.main:  # restarted by Ray: it takes shards again once its model is loaded
                shard_refs[actor.ready.remote()] = (phase, actor, None, time.time())

    def shard_done(ref):
        phase, actor, index, _ = shard_refs.pop(ref)
        try:
            value = ray.get(ref)
        except ray.exceptions.RayActorError:
            if actor is phase.main:
                raise
            phase.forget(actor)
            if index is not None and not phase.finished and phase.give_back(index, actor):
                log.warning("%s: worker lost during shard %d; the shard goes back to the queue", phase.plan.key, index)
                for idle in phase.take_idle():
                    dispatch(phase, idle)
            return
        if phase.finished:  # a helper that loaded its model after the last shard was done
            phase.release(actor)
            return
        if index is not None:
            record, seconds, node = value
            slower = phase.finish(index, actor, time.time())
            if slower is not None:
                drop_copies(phase, slower)
                state.finish_shard(phase.plan, phase.stage, index, record, seconds, node)
        if not phase.finished:
            dispatch(phase, actor)
            return
        phase.release_helpers()
        del phases[phase.plan.key]
        sharded.add((phase.plan.key, phase.stage.name))
        submit_next(phase.plan)
        admit_waiting()

    def check_stragglers():
        for phase in list(phases.values()):
            for idle in phase.take_idle():
                dispatch(phase, idle)

    def submit_next(plan):
        """Submit the next stage of ``plan`` (none while one of its stages or shards runs)."""
        if plan.key in phases or any(p is plan for p, *_ in pending.values()):
            return
        stage = plan.next_stage()
        if stage is None:
            if plan.key in workers:
                ray.kill(workers.pop(plan.key))
                admit_waiting()
            return
        if stage.uses_model and plan.key not in workers:
            if res.model_workers is not None and live_actors() >= res.model_workers:
                waiting.append(plan)
                return
            workers[plan.key] = new_worker(plan)
        n_shards = stage.shards(plan.config)
        if n_shards > 1 and (plan.key, stage.name) not in sharded:
            start_shards(plan, stage, n_shards)
            return
        inputs = plan.inputs(stage)
        actor = workers[plan.key] if stage.uses_model else llm
        pending[actor.run.remote(plan.config, stage.name, inputs)] = (plan, stage, inputs, time.time())

    for plan in plans:  # actors beyond the cluster's resources wait in Ray's queue until one is released
        submit_next(plan)
    last = time.perf_counter()
    while pending or shard_refs:
        waiting_workers = any(phase.idle for phase in phases.values())  # they may take a straggler's copy
        ready, _ = ray.wait([*pending, *shard_refs], num_returns=1,
                            timeout=STRAGGLER_CHECK_S if waiting_workers else PROGRESS_EVERY_S)
        check_stragglers()
        for ref in ready:
            with _user_errors():
                if ref in shard_refs:
                    shard_done(ref)
                    continue
                plan, stage, inputs, _ = pending.pop(ref)
                output, seconds = ray.get(ref)
            state.finish(plan, stage, inputs, output, seconds)
            submit_next(plan)
        if time.perf_counter() - last >= PROGRESS_EVERY_S or (not ready and not waiting_workers):
            last = time.perf_counter()
            shown = [(plan, stage.name, submitted) for plan, stage, _, submitted in pending.values()]
            shown += [(phase.plan, shard_label(phase.stage.name, index), submitted)
                      for phase, _, index, submitted in shard_refs.values() if index is not None]
            log.info("progress: %s", heartbeat(plans, shown, _snapshot(board), time.time()))
    for w in workers.values():
        ray.kill(w)
    ray.kill(llm)
    ray.kill(board)


@contextlib.contextmanager
def _user_errors():
    """A stage's UserError reaches the user as itself, not wrapped in Ray's task error."""
    try:
        yield
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if hasattr(e, "cause") else e
        if isinstance(cause, UserError):
            raise cause from None
        raise


def _snapshot(board) -> dict:
    try:
        return ray.get(board.snapshot.remote(), timeout=5)
    except Exception:  # noqa: BLE001 (a heartbeat never stops the job)
        return {}


def heartbeat(plans, pending, started: dict, now: float) -> str:
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
