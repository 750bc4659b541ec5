"""Ray actors: one per model worker (holds a CLIP model on its device) and one for the LLM stage.

The actors are thin: each runs a stage of :mod:`ccs_dist.stages.chain` by name. Fault injection for the
tests: ``CCS_DIST_FAULT=<stage>:<marker file>`` makes a model worker's process die once, mid-stage;
``CCS_DIST_SHARD_DELAY=<seconds>`` (or ``<stage>:<seconds>,...``) makes every shard (of that stage) take at
least that long (a slow GPU's shard), so a test's shards outlast a helper's start-up on another node; ``CCS_DIST_SLOW_SHARD=<index>:<seconds>:<marker
file>`` makes the first copy of shard ``index`` take that much longer (a straggler; a second copy runs at the
normal pace).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import ray
from ccs_dist.core.log import setup_logging
from ccs_dist.stages.chain import ModelRunner
from ccs_dist.stages.chain import StageContext, run_stage


def _straggle_once(index: int) -> float:
    """Seconds shard ``index`` is held back: the first copy of the slow shard only (its marker file says so)."""
    want, _, rest = os.environ.get("CCS_DIST_SLOW_SHARD", "").partition(":")
    seconds, _, marker = rest.partition(":")
    if not marker or want != str(index):
        return 0.0
    try:
        with open(marker, "x") as f:  # exclusive create: one copy in the whole cluster
            f.write(f"shard {index} held back {seconds} s\n")
    except FileExistsError:
        return 0.0
    return float(seconds)


def _shard_delay(stage: str) -> float:
    value = os.environ.get("CCS_DIST_SHARD_DELAY") or "0"
    if ":" not in value:
        return float(value)
    delays = dict(part.split(":") for part in value.split(","))
    return float(delays.get(stage, 0))


def _maybe_die(stage: str) -> None:
    fault = os.environ.get("CCS_DIST_FAULT", "")
    want, _, marker = fault.partition(":")
    if want != stage or not marker or Path(marker).exists():
        return
    Path(marker).write_text(f"killed {stage} once\n")
    threading.Timer(1.0, lambda: os._exit(1)).start()  # die while the stage is running


@ray.remote(num_cpus=0, max_restarts=-1)
class StageBoard:
    """Where workers note the moment a stage starts running, so the driver tells running from queued."""

    def __init__(self):
        self.started: dict[tuple[str, str], float] = {}

    def start(self, model: str, stage: str) -> None:
        self.started[(model, stage)] = time.time()

    def snapshot(self) -> dict[tuple[str, str], float]:
        return dict(self.started)


def _announce(board: str | None, model: str, stage: str) -> None:
    """Tell the stage board (a named actor: a handle among constructor arguments would pin it in the object
    store, which Ray warns about for restartable actors) that a stage starts."""
    if board is None:
        return
    try:
        ray.get_actor(board).start.remote(model, stage)  # fire and forget: the heartbeat is best effort
    except ValueError:  # the board is gone (the driver is finishing)
        pass


def _quiet_setup(progress: bool) -> None:
    setup_logging()
    if not progress:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"


@ray.remote(max_restarts=3, max_task_retries=3)
class ModelWorker:
    """One model loaded once; runs that model's model stages."""

    def __init__(self, config, threads: int | None, progress: bool = True, board: str | None = None):
        _quiet_setup(progress)
        self.board = board
        self.runner = ModelRunner(config, threads=threads, progress=progress)

    def run(self, config, stage: str, inputs):
        _announce(self.board, config.key, stage)
        _maybe_die(stage)
        return _timed(self.runner.run, stage, inputs)

    def ready(self) -> str:
        """The node this worker runs on, once its model is loaded (the driver then hands it a shard)."""
        return ray.get_runtime_context().get_node_id()

    def run_shard(self, config, stage: str, index: int, inputs):
        """(shard record, seconds, node id) of shard ``index`` of ``stage`` (:attr:`Stage.run_shard`)."""
        _announce(self.board, config.key, shard_label(stage, index))
        held_back = _straggle_once(index)
        record, seconds = _timed(self.runner.run_shard, stage, index, inputs)
        time.sleep(max(0.0, _shard_delay(stage) - seconds) + held_back)
        return record, seconds, ray.get_runtime_context().get_node_id()


def shard_label(stage: str, index: int) -> str:
    return f"{stage}[{index}]"


@ray.remote(max_restarts=3, max_task_retries=3, num_cpus=0)
class LLMWorker:
    """Owns the LLM clients, their rate limiters and the disk cache; runs the stages that use no model
    (the score stage), one model's at a time, without progress bars. The executor pins it to the driver's
    node (:func:`pinned_to_this_node`), so a restart finds the same disk cache."""

    def __init__(self, board: str | None = None):
        _quiet_setup(progress=False)  # scores run without bars: no "Loading weights" bar either
        self.board = board

    def run(self, config, stage: str, inputs):
        _announce(self.board, config.key, stage)
        return _timed(run_stage, stage, StageContext(config, None, progress=False), inputs)


def _timed(fn, *args, **kwargs):
    """(fn's result, seconds it ran): stage times exclude waiting for a worker slot."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0


def pinned_to_this_node():
    """A scheduling strategy that keeps an actor on the node of the calling process (restarts included)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
