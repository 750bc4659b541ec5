"""Description pools: one description a line, blanks and duplicates dropped and counted.

The project ships its own default pool (``data/default_pool.txt``) with each line's concept family in
``data/default_pool_families.txt`` (same line order), so tests and the offline judge have ground truth.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from ccs_dist.core.errors import UserError

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
DEFAULT_POOL_PATH = DATA_DIR / "default_pool.txt"
DEFAULT_FAMILIES_PATH = DATA_DIR / "default_pool_families.txt"


@dataclass(frozen=True)
class DescriptionPool:
    """An ordered, duplicate-free list of descriptions, optionally with a concept family per line."""

    texts: tuple[str, ...]
    source: str
    families: tuple[str, ...] | None = None
    n_blank_dropped: int = 0
    n_duplicates_dropped: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def content_hash(self) -> str:
        """sha256 of the texts in order: the cache key of anything computed from this pool."""
        h = hashlib.sha256()
        for t in self.texts:
            h.update(t.encode("utf-8") + b"\n")
        return h.hexdigest()


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist: pass a text file with one description per line")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path} is not UTF-8 text ({e.reason}): re-save it as UTF-8") from e


def read_pool(path: str | Path, families_path: str | Path | None = None) -> DescriptionPool:
    """Read a description file: strip lines, drop blanks and repeated lines (first kept), count both.

    ``families_path``, if given, has one family name per line of ``path`` (blank lines included) and is
    filtered alongside it.
    """
    path = Path(path)
    lines = _read_lines(path, "description file")
    fams = None
    if families_path is not None:
        fams = _read_lines(Path(families_path), "family file")
        if len(fams) != len(lines):
            raise UserError(
                f"family file {families_path} has {len(fams)} lines but {path} has {len(lines)}: "
                "give one family per description line"
            )
    texts: list[str] = []
    kept_fams: list[str] = []
    seen: set[str] = set()
    n_blank = n_dup = 0
    for i, raw in enumerate(lines):
        text = " ".join(raw.split())
        if not text:
            n_blank += 1
            continue
        if text in seen:
            n_dup += 1
            continue
        seen.add(text)
        texts.append(text)
        if fams is not None:
            kept_fams.append(fams[i].strip())
    if not texts:
        raise UserError(f"description file {path} has no non-blank lines: give at least one description per line")
    if n_blank or n_dup:
        log.info("description pool %s: %d kept, %d blank and %d duplicate lines dropped", path, len(texts), n_blank, n_dup)
    return DescriptionPool(
        texts=tuple(texts),
        source=str(path),
        families=tuple(kept_fams) if fams is not None else None,
        n_blank_dropped=n_blank,
        n_duplicates_dropped=n_dup,
    )


def default_pool() -> DescriptionPool:
    """The project's own pool (>= 1,000 descriptions, >= 20 families), with family tags."""
    return read_pool(DEFAULT_POOL_PATH, DEFAULT_FAMILIES_PATH)
