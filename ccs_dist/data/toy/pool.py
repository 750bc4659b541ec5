"""The ``toy`` description pool: lines naming every toy factor value, among the default pool's distractors.

Lines are written in the words of the toy captions (the only words ``ccs-toy``'s text tower was trained on),
a few phrasings per value; each is tagged with its factor as the concept family.
"""

from __future__ import annotations

import re

from ccs_dist.data.toy.world import FACTORS, caption
from ccs_dist.text.pool import DescriptionPool, default_pool

# phrasings per factor, "{v}" = the value
_PHRASES: dict[str, tuple[str, ...]] = {
    "colour": ("{v}", "{v} colour"),
    "shape": ("{v}", "{v} shape"),
    "position": ("{v}", "at the {v}", "{v} corner"),
    "size": ("{v}", "{v} size"),
    "texture": ("{v} background", "on a {v} background"),
}


def _caption_lines() -> list[tuple[str, str]]:
    """(the single-factor toy caption, factor) for every factor value: "a red object", "a circle", ..."""
    return [(caption({f: v}), f) for f, values in FACTORS.items() for v in values]


def phrasings(factor: str, value: str) -> tuple[str, ...]:
    """The pool's phrasings of one factor value ("red", "red colour"); ``ccs-toy`` is trained on them too."""
    return tuple(p.format(v=value) for p in _PHRASES[factor])


def toy_lines() -> list[tuple[str, str]]:
    """(description, family) for every phrasing of every factor value.

    The single-factor captions ("a red object", "an object at the top left") are left out: every factor
    but shape would share the filler noun "object", and a judge reading any five toy lines would label a
    head by it instead of by what the lines name.
    """
    lines = [(t, f) for f, values in FACTORS.items() for v in values for t in phrasings(f, v)]
    seen: set[str] = set()
    return [(t, f) for t, f in lines if not (t in seen or seen.add(t))]


def toy_pool() -> DescriptionPool:
    """The default pool followed by the toy lines (families tagged throughout)."""
    base = default_pool()
    known = set(base.texts)
    extra = [(t, f) for t, f in toy_lines() if t not in known]
    return DescriptionPool(
        texts=base.texts + tuple(t for t, _ in extra),
        source="toy",
        families=(base.families or ("",) * len(base.texts)) + tuple(f for _, f in extra),
    )


def toy_words() -> frozenset[str]:
    """Every word a toy caption or toy pool line uses (lower case)."""
    return frozenset(w for t, _ in _caption_lines() + toy_lines() for w in re.findall(r"[a-z]+", t.lower()))


def null_vocabulary() -> tuple[str, ...]:
    """The default pool's words that no toy caption uses: the words of ``ccs-toy``'s null captions (sorted).

    Words only, never the pool's sentences: training teaches the text tower that text outside the toy
    world describes no toy image, as a real CLIP knows an igloo is not a red square.
    """

    words = {w for t in default_pool().texts for w in re.findall(r"[a-z]+", t.lower())}
    return tuple(sorted(words - toy_words()))
