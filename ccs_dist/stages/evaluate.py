"""Evaluate stage: build the head sets from the ccs table, soft-prune each and evaluate it on every task
(one pass over each task's data serves every head set). The job spec section ``evaluation`` is
the library's :class:`~ccs_dist.evaluate.config.EvalConfig` itself.

``shards > 1`` splits the tasks into that many contiguous groups (at most one per task): a shard is one
group's rows, evaluated by whichever worker holds the model and kept in a :class:`ShardFolder` (a work
folder of the artifact store, so a remote root carries them between nodes) until the stage merges them in
order. Each task is evaluated by the same call either way, so the table is the unsharded one.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from ccs_dist.artifacts.schemas import EVALUATION_SCHEMA
from ccs_dist.artifacts.store import ArtifactStore, atomic_write_bytes, atomic_write_json, read_json
from ccs_dist.ccs.head_sets import HeadSet, build_head_sets
from ccs_dist.core.errors import UserError
from ccs_dist.data.synthetic import write_all
from ccs_dist.evaluate.config import EvalConfig
from ccs_dist.evaluate.run import evaluate, evaluate_rows, random_summary
from ccs_dist.models.loading import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluateResult:
    table: pl.DataFrame  # EVALUATION_SCHEMA
    head_sets: tuple[HeadSet, ...]
    seconds: float


@dataclass(frozen=True)
class ShardFolder:
    """Where the shards of one evaluation wait for the merge: the work folder ``evaluate-shards/<key>`` of an
    artifact store; each shard's parquet file is complete once there, and published to a remote root."""

    store: ArtifactStore
    key: str
    KIND = "evaluate-shards"

    def _path(self, index: int) -> Path:
        return self.store.partial_dir(self.KIND, self.key) / f"shard-{index:05d}.parquet"

    def read(self, index: int) -> pl.DataFrame | None:
        path = self._path(index)
        if not path.is_file():
            self.store.fetch_partial(self.KIND, self.key, _is_shard_file)
        return pl.read_parquet(path) if path.is_file() else None

    def write(self, index: int, table: pl.DataFrame) -> None:
        self.store.begin(self.KIND, self.key)
        buffer = io.BytesIO()
        table.write_parquet(buffer)
        atomic_write_bytes(self._path(index), buffer.getvalue())
        self.store.publish_partial(self.KIND, self.key, _is_shard_file)

    def clear(self) -> None:
        self.store.discard_partial(self.KIND, self.key)


def _is_shard_file(name: str) -> bool:
    return name.startswith("shard-") and name.endswith(".parquet")


def evaluate_stage(loaded: LoadedModel, ccs: pl.DataFrame | None, config: EvalConfig, *, data_root: str | Path,
                   progress: bool, shard_dir: ShardFolder | None = None) -> EvaluateResult:
    """Every head set on every task; no tasks: an empty table. With ``shard_dir`` and ``shards > 1``: the task
    groups' rows found there (done ahead by :func:`evaluate_shard`) or evaluated here, merged in order."""
    if not config.tasks:
        return EvaluateResult(pl.DataFrame(schema=EVALUATION_SCHEMA), (), 0.0)
    t0 = time.perf_counter()
    head_sets = _head_sets(loaded, ccs, config)
    log.info("head sets: %s", ", ".join(f"{h.condition}{'' if h.seed is None else f'[{h.seed}]'}({h.n_pruned})" for h in head_sets))
    eval_config = replace(config, data_root=str(data_root), progress=progress)
    if shard_dir is None or evaluation_shards(config) == 1:
        table = evaluate(loaded, list(config.tasks), head_sets, eval_config)
    else:
        rows = []
        for index in range(evaluation_shards(config)):
            rows += _shard_rows(loaded, head_sets, config, eval_config, shard_dir, index).to_dicts()
        table = pl.DataFrame(rows + random_summary(rows), schema=EVALUATION_SCHEMA)
        shard_dir.clear()
    return EvaluateResult(table, tuple(head_sets), time.perf_counter() - t0)


def evaluation_shards(config: EvalConfig) -> int:
    return max(1, min(config.shards, len(config.tasks)))


def shard_tasks(config: EvalConfig, index: int) -> tuple[str, ...]:
    """The contiguous group of tasks of shard ``index``."""
    n, t = evaluation_shards(config), len(config.tasks)
    return config.tasks[index * t // n : (index + 1) * t // n]


def evaluate_shard(loaded: LoadedModel, ccs: pl.DataFrame | None, config: EvalConfig, index: int, *,
                   data_root: str | Path, shard_dir: ShardFolder) -> dict:
    """Shard ``index`` of a sharded evaluation into ``shard_dir`` (unless there already). -> its record."""
    n = evaluation_shards(config)
    if not 0 <= index < n:
        raise UserError(f"evaluation shard {index} of {n}: use 0..{n - 1}")
    table = _shard_rows(loaded, _head_sets(loaded, ccs, config), config,
                        replace(config, data_root=str(data_root), progress=False), shard_dir, index)
    return {"index": index, "tasks": list(shard_tasks(config, index)), "rows": table.height}


def _head_sets(loaded: LoadedModel, ccs: pl.DataFrame | None, config: EvalConfig) -> list[HeadSet]:
    head_sets = build_head_sets(ccs, loaded.key, loaded.num_layers, loaded.num_heads, config)
    if not head_sets:
        raise UserError("no head sets: give conditions and/or explicit head lists (--conditions, --heads)")
    return head_sets


def _shard_rows(loaded, head_sets, config: EvalConfig, eval_config: EvalConfig, shard_dir: ShardFolder,
                index: int) -> pl.DataFrame:
    """Shard ``index``'s rows (less the random summary), read from ``shard_dir`` or evaluated and written there."""
    table = shard_dir.read(index)
    if table is not None:
        return table
    table = pl.DataFrame(evaluate_rows(loaded, list(shard_tasks(config, index)), head_sets, eval_config),
                         schema=EVALUATION_SCHEMA)
    shard_dir.write(index, table)
    return table


def prepare_synthetic_data(tasks: list[str] | tuple[str, ...], data_root: Path) -> None:
    """Write the synthetic datasets of ``tasks`` (the real on-disk formats) once into ``data_root``."""
    if not tasks:
        return
    marker = data_root / "synthetic.json"
    wanted = sorted({t.partition("@")[0] for t in tasks})
    if marker.is_file() and read_json(marker).get("tasks") == wanted:
        return
    write_all(data_root, wanted)
    atomic_write_json(marker, {"tasks": wanted})
