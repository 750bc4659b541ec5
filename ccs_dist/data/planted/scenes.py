"""World v3 on disk: probe folders (PNG + ``labels.csv`` with every factor, hidden ones included) and held-out
ImageFolder tasks ``plant-<factor>`` (one per factor, hidden ones included).

Held-out sets are drawn from generators seeded apart from training's (offset by :data:`HELD_OUT_SEED`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccs_dist.data.planted import world
from ccs_dist.data.toy.scenes import write_factor_task, write_labelled_images

HELD_OUT_SEED = 2_000_003
TASK_PREFIX = "plant-"
TASKS: tuple[str, ...] = tuple(TASK_PREFIX + f for f in world.FACTOR_NAMES)


def factor_of_task(task: str) -> str:
    return task[len(TASK_PREFIX):]


def write_probe_folder(folder: Path, n: int, seed: int) -> Path:
    """``n`` plant images ``{i:06d}.png`` and ``labels.csv`` (file + one column per factor); idempotent."""
    return write_labelled_images(folder, world, np.random.default_rng([HELD_OUT_SEED, seed]), n,
                                 {"n": n, "seed": seed, "world": "plant"})


def write_task(root: Path, task: str, per_class: int = 60, seed: int = 1) -> Path:
    """The held-out set of ``plant-<factor>``: ROOT/plant-<factor>/<class folder>/<i>.png + classnames.txt."""
    factor = factor_of_task(task)
    if factor not in world.FACTORS:
        raise KeyError(f"no plant factor {factor!r}; known: {', '.join(world.FACTOR_NAMES)}")
    return write_factor_task(Path(root) / task, world, factor, per_class,
                             np.random.default_rng([HELD_OUT_SEED, seed, world.FACTOR_NAMES.index(factor)]), seed)
