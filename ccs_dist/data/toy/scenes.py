"""The toy world on disk: probe folders (PNG + ``labels.csv``) and held-out ImageFolder tasks ``toy-<factor>``.

Held-out sets are drawn from seeds the training never uses (training draws from one generator seeded with
its own seed; these seeds are offset by :data:`HELD_OUT_SEED`), so no image is shared with training.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from ccs_dist.artifacts.store import atomic_write_bytes, atomic_write_json, read_json
from ccs_dist.data.toy import world

HELD_OUT_SEED = 1_000_003
TASK_PREFIX = "toy-"
TASKS: tuple[str, ...] = tuple(TASK_PREFIX + f for f in world.FACTOR_NAMES)
LABELS_FILE = "labels.csv"
CLASSNAMES_FILE = "classnames.txt"  # the ``folder`` layout of ccs_dist.data.datasets


def factor_of_task(task: str) -> str:
    return task[len(TASK_PREFIX):]


def _png(image_SS3: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image_SS3, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def write_labelled_images(folder: Path, factor_world: ModuleType, rng: np.random.Generator, n: int, marker: dict) -> Path:
    """``n`` scenes of ``factor_world`` (a world module: FACTORS, sample_scenes, render) drawn from ``rng`` as
    ``{i:06d}.png`` and ``labels.csv`` (file + one column per factor); ``complete.json`` = ``marker`` makes it idempotent."""
    folder = Path(folder)
    done = folder / "complete.json"
    if done.is_file() and read_json(done) == marker:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    scenes = factor_world.sample_scenes(rng, n)
    images = factor_world.render(scenes, rng)
    rows = []
    for i in range(n):
        name = f"{i:06d}.png"
        atomic_write_bytes(folder / name, _png(images[i]))
        rows.append({"file": name, **scenes.value_names(i)})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["file", *factor_world.FACTORS])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(folder / LABELS_FILE, out.getvalue().encode("utf-8"))
    atomic_write_json(done, marker)
    return folder


def write_probe_folder(folder: Path, n: int, seed: int) -> Path:
    """``n`` toy images ``{i:06d}.png`` and ``labels.csv`` (file + one column per factor); idempotent."""
    return write_labelled_images(folder, world, np.random.default_rng(HELD_OUT_SEED + seed), n, {"n": n, "seed": seed})


def read_probe_labels(folder: Path) -> dict[str, dict[str, int]]:
    """file name -> {factor: value index} from a probe folder's ``labels.csv``."""
    path = Path(folder) / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a toy probe folder is written by the toy:N image spec")
    with open(path, newline="", encoding="utf-8") as f:
        return {r["file"]: {f_: world.factor_index(f_, r[f_]) for f_ in world.FACTOR_NAMES} for r in csv.DictReader(f)}


def write_task(root: Path, task: str, per_class: int = 60, seed: int = 1) -> Path:
    """The held-out set of ``toy-<factor>``: ROOT/toy-<factor>/<class folder>/<i>.png + classnames.txt.

    Images are sampled with every other factor uniform, ``per_class`` per value of the task's factor.
    """
    factor = factor_of_task(task)
    if factor not in world.FACTORS:
        raise KeyError(f"no toy factor {factor!r}; known: {', '.join(world.FACTOR_NAMES)}")
    return write_factor_task(Path(root) / task, world, factor, per_class,
                             np.random.default_rng([HELD_OUT_SEED, seed, world.FACTOR_NAMES.index(factor)]), seed)


def write_factor_task(folder: Path, factor_world: ModuleType, factor: str, per_class: int, rng: np.random.Generator,
                      seed: int) -> Path:
    """FOLDER/<class folder>/<i>.png + classnames.txt: ``per_class`` scenes of ``factor_world`` per value of
    ``factor``, every other factor uniform, drawn from ``rng``; idempotent in (per_class, seed)."""
    done = folder / "complete.json"
    if done.is_file() and read_json(done) == {"per_class": per_class, "seed": seed}:
        return folder
    values = factor_world.FACTORS[factor]
    scenes = factor_world.sample_scenes(rng, per_class * len(values))
    scenes.values_NF[:, list(factor_world.FACTORS).index(factor)] = np.repeat(np.arange(len(values)), per_class)
    images = factor_world.render(scenes, rng)
    for v, value in enumerate(values):
        sub = folder / f"{v:02d}_{value.replace(' ', '_')}"
        sub.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            atomic_write_bytes(sub / f"{i:05d}.png", _png(images[v * per_class + i]))
    atomic_write_bytes(folder / CLASSNAMES_FILE, ("\n".join(values) + "\n").encode("utf-8"))
    atomic_write_json(done, {"per_class": per_class, "seed": seed})
    return folder
