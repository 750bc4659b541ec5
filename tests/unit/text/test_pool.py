"""Description pools: the shipped default pool and reading user files."""

from __future__ import annotations

from collections import Counter

import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.text.pool import default_pool, read_pool
from ccs_dist.stages.sources import resolve_pool
from tests.support.paths import SHARED_DATA


def test_default_pool_has_1000_lines_in_20_families():
    pool = default_pool()
    assert len(pool) >= 1000 and pool.families is not None and len(pool.families) == len(pool)
    counts = Counter(pool.families)
    assert len(counts) >= 20 and min(counts.values()) >= 20
    assert pool.n_duplicates_dropped == 0 and pool.n_blank_dropped == 0
    for family in ("colour", "animal", "location", "texture", "counting", "text", "profession", "emotion"):
        assert family in counts


def test_blank_and_duplicate_lines_are_dropped_and_counted(tmp_path):
    f = tmp_path / "pool.txt"
    f.write_text("A dog\n\n  A  dog \nA cat\n\nA dog\nRed\n", encoding="utf-8")
    pool = read_pool(f)
    assert pool.texts == ("A dog", "A cat", "Red")
    assert (pool.n_blank_dropped, pool.n_duplicates_dropped) == (2, 2)
    assert pool.content_hash == read_pool(f).content_hash != default_pool().content_hash


def test_empty_and_missing_description_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(UserError, match="no non-blank lines"):
        read_pool(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="does not exist"):
        resolve_pool(tmp_path / "missing.txt")


@pytest.mark.skipif(not (SHARED_DATA / "image_descriptions_general.txt").is_file(), reason="../shared/data not present")
def test_reads_the_papers_pool():
    path = SHARED_DATA / "image_descriptions_general.txt"
    pool = read_pool(path)
    n_lines = len(path.read_text(encoding="utf-8").splitlines())
    assert n_lines >= 3497
    assert len(pool) + pool.n_duplicates_dropped + pool.n_blank_dropped == n_lines
    assert len(pool) > 3400
