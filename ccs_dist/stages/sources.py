"""What a spec's names resolve to at the stage level: description pools by name or path.

The names (``default``, ``toy``, the published pools) live here, above the libraries that define each pool,
so no library module needs to know every source (``text.pool`` would otherwise import the toy world's pool
and the toy pool imports ``text.pool``).
"""

from __future__ import annotations

from pathlib import Path

from ccs_dist.data.planted.text import plant_pool, vocabulary_additions
from ccs_dist.data.toy.pool import toy_pool
from ccs_dist.text.pool import DescriptionPool, default_pool, read_pool
from ccs_dist.text.remote import REMOTE_POOLS, fetch_pool


def resolve_pool(spec: str | Path, cache_dir: str | Path = "cache") -> DescriptionPool:
    """``"default"`` for the shipped pool, a published pool's name (fetched once into ``cache_dir``, see
    :mod:`ccs_dist.text.remote`), else a path to a description file."""
    if str(spec) == "default":
        return default_pool()
    if str(spec) in REMOTE_POOLS:
        return read_pool(fetch_pool(REMOTE_POOLS[str(spec)], cache_dir))
    if str(spec) == "toy":
        return toy_pool()
    if str(spec) == "plant":
        return plant_pool()
    return read_pool(spec)


def named_pools() -> tuple[str, ...]:
    """Pool names that are not paths: ``default`` and the published pools."""
    return ("default", "toy", "plant", *REMOTE_POOLS)


def labeler_vocabulary(pool: str | Path) -> tuple[str, ...]:
    """The frozen concepts a pool's world adds to the offline labeler's vocabulary: the plant world's for the
    ``plant`` pool, none otherwise (the toy world's are in the shipped vocabulary already)."""
    return vocabulary_additions() if str(pool) == "plant" else ()
