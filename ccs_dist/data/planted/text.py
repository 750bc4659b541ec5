"""World v3's frozen text side: the ``plant`` description pool, the labeler's vocabulary additions, the concept map.

FROZEN: the three package data files under ``data/`` (``plant_pool_lines.txt`` + ``plant_pool_families.txt``,
``plant_concepts.txt``, ``plant_concept_map.json``) were written on 2026-12-03, before any world-v3 model was
trained, and are never edited after seeing a span or a score; ``tests/unit/data/planted/test_text.py`` pins
each one's sha256. The pool lines name the values of the pool-named factors (:data:`world.POOL_FACTORS`) in
phrasings that are not the captions' ("the colour red", "in the top left corner", "a striped pattern"); the
hidden factors (:data:`world.HIDDEN_FACTORS`) appear in none of the files, by construction and by test.
No training loss reads any of them (:mod:`ccs_dist.toy.plant_loss` is image-side only).
"""

from __future__ import annotations

import json
from pathlib import Path

from ccs_dist.text.pool import DescriptionPool, default_pool, read_pool

DATA_DIR = Path(__file__).parent / "data"
POOL_LINES = DATA_DIR / "plant_pool_lines.txt"
POOL_FAMILIES = DATA_DIR / "plant_pool_families.txt"
CONCEPTS = DATA_DIR / "plant_concepts.txt"
CONCEPT_MAP = DATA_DIR / "plant_concept_map.json"
FROZEN_FILES = (POOL_LINES, POOL_FAMILIES, CONCEPTS, CONCEPT_MAP)


def plant_lines() -> DescriptionPool:
    """The frozen world-v3 lines alone, each tagged with the factor it names."""
    return read_pool(POOL_LINES, POOL_FAMILIES)


def plant_pool() -> DescriptionPool:
    """The default pool (the distractors) followed by the frozen world-v3 lines, families tagged throughout."""
    base, own = default_pool(), plant_lines()
    known = set(base.texts)
    extra = [(t, f) for t, f in zip(own.texts, own.families) if t not in known]
    return DescriptionPool(texts=base.texts + tuple(t for t, _ in extra), source="plant",
                           families=(base.families or ("",) * len(base.texts)) + tuple(f for _, f in extra))


def vocabulary_additions() -> tuple[str, ...]:
    """The offline labeler's concept vocabulary additions for world v3 (frozen)."""
    return tuple(l.strip() for l in CONCEPTS.read_text(encoding="utf-8").splitlines() if l.strip())


def concept_map_path() -> Path:
    """The frozen concept map file ({factor: [label, ...]}), in the format ``evaluation.concept_map`` reads."""
    return CONCEPT_MAP


def concept_map() -> dict[str, tuple[str, ...]]:
    """Factor -> the concept labels that name it (keys starting with ``_`` are comments)."""
    raw = json.loads(CONCEPT_MAP.read_text(encoding="utf-8"))
    return {k: tuple(v) for k, v in raw.items() if not k.startswith("_")}
