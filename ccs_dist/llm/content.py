"""Chat message content beyond plain text: image parts, as sent, as keyed in the cache, as counted for rate limits.

A message's content is a ``str`` (every text request) or a tuple of parts, each a ``str`` (a text part) or an
:class:`ImagePart` (one PNG). On the wire an image part is an OpenAI ``image_url`` part holding a base64 PNG
data URI; in a cache key it is the sha256 of its PNG bytes, so keys stay small and an image's answer is found
again whatever the request around it carries. Plain-text contents key exactly as before (old caches still hit).
"""

from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass
from typing import Any, Union

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# what one image costs in prompt tokens for the rate limiter's estimate (a low-detail image: 85 tokens)
IMAGE_TOKENS = 85


@dataclass(frozen=True)
class ImagePart:
    png: bytes

    def __post_init__(self) -> None:
        if not self.png.startswith(PNG_SIGNATURE):
            raise ValueError("an image part must hold PNG bytes (they do not start with the PNG signature)")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


Content = Union[str, tuple[Union[str, ImagePart], ...]]


def wire_content(content: Content) -> str | list[dict[str, Any]]:
    """The ``content`` of one message as the OpenAI chat API takes it."""
    if isinstance(content, str):
        return content
    return [{"type": "image_url", "image_url": {"url": p.data_uri()}} if isinstance(p, ImagePart)
            else {"type": "text", "text": p} for p in content]


def key_content(content: Content) -> str | list[dict[str, str]]:
    """The ``content`` of one message as the cache key holds it (images by the sha256 of their PNG bytes)."""
    if isinstance(content, str):
        return content
    return [{"image_sha256": p.sha256} if isinstance(p, ImagePart) else {"text": p} for p in content]


def estimated_tokens(content: Content) -> float:
    """Prompt tokens of one message's content, as the rate limiter estimates them before the server says."""
    if isinstance(content, str):
        return len(content) / 4
    return sum(IMAGE_TOKENS if isinstance(p, ImagePart) else len(p) / 4 for p in content)


def first_token_probs(choice: dict[str, Any]) -> tuple[tuple[str, float], ...] | None:
    """``(token, probability)`` of the first answer token's alternatives from a choice's ``logprobs``
    (the chosen token first); None when the server returned none."""
    lp = choice.get("logprobs")
    items = lp.get("content") if isinstance(lp, dict) else None
    if not isinstance(items, list) or not items or not isinstance(items[0], dict):
        return None
    first = items[0]
    seen: dict[str, float] = {}
    for alt in [first, *(first.get("top_logprobs") or [])]:
        tok, logp = (alt.get("token"), alt.get("logprob")) if isinstance(alt, dict) else (None, None)
        if isinstance(tok, str) and isinstance(logp, (int, float)) and math.isfinite(logp) and tok not in seen:
            seen[tok] = math.exp(min(float(logp), 0.0))
    return tuple(seen.items()) or None
