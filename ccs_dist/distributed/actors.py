"""Ray actors: one per model worker (holds a CLIP model on its device) and one for the LLM stage.

The actors are thin: each method calls a stage of :mod:`ccs_dist.jobs.stages`. Fault injection for the
tests: ``CCS_DIST_FAULT=<stage>:<marker file>`` makes a model worker's process die once, mid-stage.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import ray


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


@ray.remote(max_restarts=3, max_task_retries=3)
class ModelWorker:
    def __init__(self, spec_json: str, entry_json: str, threads: int | None, progress: bool = True, board: str | None = None):
        from ccs_dist.jobs.spec import JobSpec, ModelEntry
        from ccs_dist.jobs.stages import ModelStages, model_key_of
        from ccs_dist.log import setup_logging

        setup_logging()
        if not progress:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        spec = JobSpec.model_validate_json(spec_json)
        entry = ModelEntry.model_validate_json(entry_json)
        self.key, self.board = model_key_of(entry), board
        self.stages = ModelStages(spec, entry, threads=threads, progress=progress)

    def spans(self):
        _announce(self.board, self.key, "spans")
        _maybe_die("spans")
        return _timed(self.stages.spans)

    def evaluate(self, ccs):
        _announce(self.board, self.key, "evaluate")
        _maybe_die("evaluate")
        return _timed(self.stages.evaluate, ccs)


@ray.remote(max_restarts=3, max_task_retries=3, num_cpus=0)
class LLMWorker:
    """Owns the LLM clients, their rate limiters and the disk cache; scores one model at a time."""

    def __init__(self, spec_json: str, board: str | None = None):
        from ccs_dist.jobs.spec import JobSpec
        from ccs_dist.log import setup_logging

        setup_logging()
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # scores run without bars: no "Loading weights" bar either
        self.spec = JobSpec.model_validate_json(spec_json)
        self.board = board

    def score(self, spans):
        from ccs_dist.jobs.stages import score_stage

        _announce(self.board, str(spans["model"][0]), "score")
        return _timed(score_stage, spans, self.spec, show_progress=False)


def _timed(fn, *args, **kwargs):
    """(fn's result, seconds it ran): stage times exclude waiting for a worker slot."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0
