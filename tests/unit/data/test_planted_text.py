"""World v3's frozen text side: sha256 pins, no hidden factor anywhere in it, not the captions verbatim."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np

from ccs_dist.data.planted import world
from ccs_dist.data.planted.text import FROZEN_FILES, concept_map, plant_lines, plant_pool, vocabulary_additions
from ccs_dist.stages.sources import resolve_pool

# frozen 2026-12-03 before any ccs-plant model was trained: a change here is a new benchmark, never a fix
PINS = {
    "plant_pool_lines.txt": "0e518d1778c7edd975777ccb777dd5dcf0c753d2ca2f01ae526899f0e9f71e3c",
    "plant_pool_families.txt": "2e98bf36fbf176b59ff5b04ca9789fb0fc57077459b30c473a963cfb58475eb1",
    "plant_concepts.txt": "889926552d23d06ec51feab5e669bb719e178e8102513d79b8009cf3bb0b78fe",
    "plant_concept_map.json": "e3620c7b19b8353517f4149578f64a2d03b3429f4bb9ce3f3d768a7d61c39a96",
}


def test_frozen_files_match_their_pins():
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in FROZEN_FILES} == PINS


def hidden_words_in(texts) -> set[str]:
    """Hidden factors' names and value words found as whole words in ``texts``."""
    words = {w for t in texts for w in re.findall(r"[a-z]+", t.lower())}
    hidden = {w for f in world.HIDDEN_FACTORS for v in (f, *world.FACTORS[f]) for w in re.findall(r"[a-z]+", v)}
    return words & hidden


def test_no_hidden_factor_in_pool_vocabulary_or_concept_map():
    cmap = concept_map()
    texts = [*plant_pool().texts, *vocabulary_additions(), *cmap, *(s for v in cmap.values() for s in v)]
    assert hidden_words_in(texts) == set()
    assert set(cmap) == set(world.POOL_FACTORS)
    # the null: the same check finds a hidden value slipped into a line
    assert hidden_words_in([*texts, "a mulberry tone"]) == {"mulberry"}


def test_pool_names_every_pool_factor_value_but_no_caption_verbatim():
    lines = plant_lines()
    assert set(lines.families) == set(world.POOL_FACTORS)
    for f in world.POOL_FACTORS:
        own = " ".join(t for t, g in zip(lines.texts, lines.families) if g == f)
        assert all(v.split()[-1] in own for v in world.FACTORS[f]), f
    rng = np.random.default_rng(0)
    scenes = world.sample_scenes(rng, 2000)
    captions = set(world.captions_for(scenes, world.sample_mentions(rng, 2000, p=0.3)))
    captions |= {world.caption({f: v}) for f in world.POOL_FACTORS for v in world.FACTORS[f]}
    assert not captions & set(lines.texts)
    pool = resolve_pool("plant")
    assert pool.source == "plant" and pool.texts[-len(lines):] == lines.texts
    assert json.loads(FROZEN_FILES[3].read_text())["_comment"].startswith("world v3")
