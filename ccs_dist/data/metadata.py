"""Package data: class names, WordNet ids and prompt templates of the evaluation tasks.

Class names and prompt ensembles are CLIP's (openai/CLIP ``data/prompts.md``, MIT), as collected in
LAION-AI/CLIP_benchmark; ImageNet names come from ``open_clip.zero_shot_metadata``; the ImageNet,
ImageNet-A and ImageNet-R WordNet-id lists are the standard sorted ones (as shipped with timm).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from ccs_dist.core.errors import UserError


def _text(name: str) -> str:
    return resources.files("ccs_dist.data").joinpath("files", name).read_text(encoding="utf-8")


def _lines(name: str) -> list[str]:
    return [line.rstrip("\n") for line in _text(name).splitlines() if line.strip()]


@lru_cache(maxsize=None)
def _templates() -> dict[str, list[str]]:
    return {k: v for k, v in json.loads(_text("templates.json")).items() if not k.startswith("_")}


def templates(task: str) -> tuple[str, ...]:
    """Prompt templates of a task; each contains ``{c}`` where the class name goes."""
    table = _templates()
    if task not in table:
        raise UserError(f"no prompt templates for {task!r}; known: {', '.join(sorted(table))}")
    return tuple(table[task])


def cifar_classnames(n_classes: int) -> tuple[str, ...]:
    return tuple(_lines(f"cifar{n_classes}.txt"))


def food101_classnames() -> tuple[str, ...]:
    """The 101 Food-101 classes in the dataset's (alphabetical folder-name) order."""
    return tuple(_lines("food101.txt"))


def food101_folders() -> tuple[str, ...]:
    """Food-101 folder names (``apple_pie``), aligned with :func:`food101_classnames`."""
    return tuple(n.replace(" ", "_") for n in food101_classnames())


def country211_codes_and_names() -> tuple[tuple[str, str], ...]:
    """(ISO 3166 alpha-2 code, CLIP class name), sorted by code as Country211's folders are."""
    return tuple(tuple(line.split("\t")) for line in _lines("country211.tsv"))  # type: ignore[misc]


def oxford_pets_breeds() -> tuple[tuple[str, str, str], ...]:
    """(file-name prefix, CLIP class name, species) for the 37 breeds in class-id order (id = index + 1)."""
    return tuple(tuple(line.split("\t")) for line in _lines("oxford_pets.tsv"))  # type: ignore[misc]


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in class-index order (sorted)."""
    return tuple(_lines("imagenet_wnids.txt"))


def imagenet_classnames() -> tuple[str, ...]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    return tuple(IMAGENET_CLASSNAMES)


def imagenet_subset_wnids(subset: str) -> tuple[str, ...]:
    """The 200 WordNet ids of ``imagenet_a`` or ``imagenet_r`` (sorted, as their folders)."""
    return tuple(_lines(f"{subset}_wnids.txt"))


def imagenet_names_by_wnid() -> dict[str, str]:
    wnids, names = imagenet_wnids(), imagenet_classnames()
    if len(wnids) != len(names):  # package data broken: not a user error
        raise RuntimeError(f"{len(wnids)} ImageNet wnids but {len(names)} class names")
    return dict(zip(wnids, names))


def concept_families() -> dict[str, tuple[str, ...]]:
    """Default concept family -> synonyms map used for concept head sets."""
    raw = json.loads(_text("concept_families.json"))
    return {k: tuple(v) for k, v in raw.items() if not k.startswith("_")}
