"""World v3 on disk: probe folders (PNG + ``labels.csv`` with every factor, hidden ones included) and held-out
ImageFolder tasks ``plant-<factor>`` (one per factor, hidden ones included).

Held-out sets are drawn from generators seeded apart from training's (offset by :data:`HELD_OUT_SEED`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ccs_dist.artifacts.store import atomic_write_bytes, atomic_write_json, read_json
from ccs_dist.data.planted import world
from ccs_dist.data.toy.scenes import CLASSNAMES_FILE, LABELS_FILE, _png

HELD_OUT_SEED = 2_000_003
TASK_PREFIX = "plant-"
TASKS: tuple[str, ...] = tuple(TASK_PREFIX + f for f in world.FACTOR_NAMES)


def factor_of_task(task: str) -> str:
    return task[len(TASK_PREFIX):]


def write_probe_folder(folder: Path, n: int, seed: int) -> Path:
    """``n`` plant images ``{i:06d}.png`` and ``labels.csv`` (file + one column per factor); idempotent."""
    folder = Path(folder)
    done = folder / "complete.json"
    if done.is_file() and read_json(done) == {"n": n, "seed": seed, "world": "plant"}:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([HELD_OUT_SEED, seed])
    scenes = world.sample_scenes(rng, n)
    images = world.render(scenes, rng)
    rows = []
    for i in range(n):
        name = f"{i:06d}.png"
        atomic_write_bytes(folder / name, _png(images[i]))
        rows.append({"file": name, **scenes.value_names(i)})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["file", *world.FACTOR_NAMES])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(folder / LABELS_FILE, out.getvalue().encode("utf-8"))
    atomic_write_json(done, {"n": n, "seed": seed, "world": "plant"})
    return folder


def write_task(root: Path, task: str, per_class: int = 60, seed: int = 1) -> Path:
    """The held-out set of ``plant-<factor>``: ROOT/plant-<factor>/<class folder>/<i>.png + classnames.txt."""
    factor = factor_of_task(task)
    if factor not in world.FACTORS:
        raise KeyError(f"no plant factor {factor!r}; known: {', '.join(world.FACTOR_NAMES)}")
    folder = Path(root) / task
    done = folder / "complete.json"
    if done.is_file() and read_json(done) == {"per_class": per_class, "seed": seed}:
        return folder
    values = world.FACTORS[factor]
    rng = np.random.default_rng([HELD_OUT_SEED, seed, world.FACTOR_NAMES.index(factor)])
    scenes = world.sample_scenes(rng, per_class * len(values))
    scenes.values_NF[:, world.FACTOR_NAMES.index(factor)] = np.repeat(np.arange(len(values)), per_class)
    images = world.render(scenes, rng)
    for v, value in enumerate(values):
        sub = folder / f"{v:02d}_{value.replace(' ', '_')}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            atomic_write_bytes(sub / f"{i:05d}.png", _png(images[v * per_class + i]))
    atomic_write_bytes(folder / CLASSNAMES_FILE, ("\n".join(values) + "\n").encode("utf-8"))
    atomic_write_json(done, {"per_class": per_class, "seed": seed})
    return folder
