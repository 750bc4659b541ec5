"""The world of a benchmark run: its factors, task prefix and concept map, told by the run's probe set.

Two worlds: the old toy world (``toy:N`` probes, ``toy-<factor>`` tasks, the shipped concept map: the demo's
planted_v2) and world v3 (``plant:N`` probes, ``plant-<factor>`` tasks, the frozen concept map of
:mod:`ccs_dist.data.planted.text`). Every factor of the world is assessed, the hidden ones included: a factor
no label names is a miss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ccs_dist.ccs.head_sets import load_concept_map
from ccs_dist.core.errors import UserError
from ccs_dist.data.planted import scenes as plant_scenes
from ccs_dist.data.planted import text as plant_text
from ccs_dist.data.planted import world as plant_world
from ccs_dist.data.toy import scenes as toy_scenes
from ccs_dist.data.toy import world as toy_world


@dataclass(frozen=True)
class World:
    name: str
    probe_prefix: str  # "toy:" | "plant:"
    task_prefix: str  # "toy-" | "plant-"
    factors: tuple[str, ...]
    default_concept_map: Callable[[], dict[str, tuple[str, ...]]]

    def tasks(self, tasks: Sequence[str]) -> tuple[str, ...]:
        """This world's tasks among ``tasks`` (a ``NAME@PATH`` keeps its path)."""
        return tuple(t for t in tasks if t.partition("@")[0].startswith(self.task_prefix))

    def factor_of_task(self, task: str) -> str:
        return task.partition("@")[0][len(self.task_prefix):]

    def concept_map(self, path: str | None = None) -> dict[str, tuple[str, ...]]:
        """The concept map a spec names (``evaluation.concept_map``), else the world's own."""
        return load_concept_map(path) if path else self.default_concept_map()


TOY = World("toy", "toy:", toy_scenes.TASK_PREFIX, toy_world.FACTOR_NAMES, load_concept_map)
PLANT = World("plant", "plant:", plant_scenes.TASK_PREFIX, plant_world.FACTOR_NAMES, plant_text.concept_map)
WORLDS: tuple[World, ...] = (TOY, PLANT)
TASK_PREFIXES: tuple[str, ...] = tuple(w.task_prefix for w in WORLDS)


def world_of_probe(images: str) -> World | None:
    """The world of a probe set spec (``toy:N`` / ``plant:N``); None for any other image set."""
    return next((w for w in WORLDS if str(images).startswith(w.probe_prefix)), None)


def world_of_factors(factors: Iterable[str]) -> World:
    """The world whose factors are those of a ``ground_truth`` table; a set that fits none is a UserError."""
    seen = set(factors)
    for w in WORLDS:
        if seen and seen <= set(w.factors):
            return w
    raise UserError(f"the ground_truth factors {', '.join(sorted(seen)) or '(none)'} fit no benchmark world "
                    f"({'; '.join(w.name + ': ' + ', '.join(w.factors) for w in WORLDS)}): probe with toy:N or plant:N")


def check_world(world: World, factors: Iterable[str], tasks: Iterable[str] = ()) -> World:
    """``world`` if the run's ground-truth factors and direct-ablation tasks belong to it, else a UserError."""
    stray = sorted(set(factors) - set(world.factors)) + sorted(t for t in set(tasks) if not t.startswith(world.task_prefix))
    if stray:
        raise UserError(f"the run mixes worlds: {', '.join(stray)} not of the {world.name} world "
                        f"(factors {', '.join(world.factors)}, tasks {world.task_prefix}<factor>); use one world's probes and tasks")
    return world


def task_factor(task: str) -> str:
    """The factor of a ``toy-<factor>`` or ``plant-<factor>`` task."""
    name = task.partition("@")[0]
    prefix = next((p for p in TASK_PREFIXES if name.startswith(p)), None)
    if prefix is None:
        raise UserError(f"task {task!r} is not a benchmark task: use {' or '.join(p + '<factor>' for p in TASK_PREFIXES)}")
    return name[len(prefix):]


def is_benchmark_task(task: str) -> bool:
    return task.startswith(TASK_PREFIXES)


__all__ = ["World", "TOY", "PLANT", "WORLDS", "world_of_probe", "world_of_factors", "check_world", "task_factor",
           "is_benchmark_task"]
