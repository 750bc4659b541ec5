"""Strict parsing of LLM answers: a label is normalised, a verdict is exactly 0 or 1 or it is invalid.

An invalid answer raises :class:`InvalidAnswer` with the reason; callers re-ask and finally record a
failed verdict. Nothing unparseable is ever read as 0.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ConfigDict, Field, ValidationError

# a label is a property name: at most 4 words (the labeler is asked for one to four) and 40 characters
# of letters, digits, spaces and - & / ' (anything else is stripped); it is then quoted in judge prompts
MAX_LABEL_WORDS = 4
MAX_LABEL_CHARS = 40
_PUNCT = re.compile(r"[^\w\s\-&/']|_", re.UNICODE)
_PREFIX = re.compile(r"^(shared property|property|label|answer)\s*[:\-]\s*", re.IGNORECASE)
_BARE_VERDICT = re.compile(r"^\s*([01])\s*\.?\s*$")
_BARE_LIST = re.compile(r"^\s*\[?\s*([01](?:\s*[,\s]\s*[01])*)\s*\]?\s*$")


class InvalidAnswer(ValueError):
    """The answer cannot be used; ``str(e)`` says why (recorded in the judgments table)."""


class _PairVerdict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    aligned: int = Field(ge=0, le=1)


class _HeadVerdicts(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    verdicts: list[int]


def normalise_label(text: str) -> str:
    """First line, no prefix/quotes/punctuation, lowercase, single spaces. ``'Geo-Location.'`` -> ``'geo-location'``."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        raise InvalidAnswer("empty label")
    s = _PREFIX.sub("", lines[0].strip())
    s = _PUNCT.sub(" ", s.strip().strip("\"'`*").lower())
    s = " ".join(s.split()).strip("-/& '")
    if not s:
        raise InvalidAnswer(f"label {text[:40]!r} is empty once normalised")
    if len(s.split()) > MAX_LABEL_WORDS or len(s) > MAX_LABEL_CHARS:
        raise InvalidAnswer(f"label {text[:60]!r} is longer than {MAX_LABEL_WORDS} words or {MAX_LABEL_CHARS} characters")
    if not any(c.isalpha() for c in s):
        raise InvalidAnswer(f"label {text[:40]!r} has no letter")
    return s


def parse_pair_verdict(text: str) -> bool:
    """``'1'``/``'0'`` (a trailing period allowed) or ``{"aligned": 0|1}`` -> bool."""
    m = _BARE_VERDICT.match(text)
    if m:
        return m.group(1) == "1"
    try:
        return bool(_PairVerdict.model_validate(json.loads(text)).aligned)
    except (ValueError, ValidationError, TypeError):
        raise InvalidAnswer(f"verdict {text[:40]!r} is not 0 or 1") from None


def parse_head_verdicts(text: str, n: int) -> list[bool]:
    """``{"verdicts": [n ints 0|1]}``, a bare JSON list or ``'1,0,1,1,0'`` -> n bools."""
    values: list[int] | None = None
    try:
        obj = json.loads(text)
        if isinstance(obj, list):
            obj = {"verdicts": obj}
        values = _HeadVerdicts.model_validate(obj).verdicts
    except (ValueError, ValidationError, TypeError):
        m = _BARE_LIST.match(text)
        if m:
            values = [int(x) for x in re.findall(r"[01]", m.group(1))]
    if values is None:
        raise InvalidAnswer(f"verdicts {text[:60]!r} are neither JSON nor a list of 0/1")
    if len(values) != n or any(v not in (0, 1) for v in values):
        raise InvalidAnswer(f"expected {n} verdicts each 0 or 1, got {values[:10]}")
    return [v == 1 for v in values]
