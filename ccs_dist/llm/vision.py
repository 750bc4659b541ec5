"""The vision judge: does an image show a label? One request per (image, label) to an OpenAI-compatible
vision endpoint, through the same client as text (rate limits, retries, deadlines, the disk cache).

The image travels as a base64 PNG ``image_url`` part beside the quoted label; the answer must be exactly
``Yes`` or ``No`` (case and a trailing period aside), else it is asked again (a new cache entry per ask) and
finally recorded as a failed verdict. When the endpoint returns the first token's log-probabilities,
``probability`` is P(yes) among the yes/no alternatives; otherwise it is the answer itself (1.0 or 0.0).
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ccs_dist.core.errors import UserError
from ccs_dist.llm.answers import InvalidAnswer
from ccs_dist.llm.cache import AnswerCache
from ccs_dist.llm.client import ChatRequest, EndpointClient, RequestRejected
from ccs_dist.llm.config import VisionJudgeConfig
from ccs_dist.llm.content import PNG_SIGNATURE, ImagePart
from ccs_dist.llm.prompts import load_template, quoted_label

_YES_NO = re.compile(r"^\s*(yes|no)\s*\.?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ImageVerdict:
    shows: bool | None  # None: the judge failed, ``error`` says why
    probability: float | None  # P(yes); None when the judge failed
    from_logprobs: bool  # probability read from the endpoint's log-probabilities (else the bare answer)
    error: str | None = None


def parse_yes_no(text: str) -> bool:
    """``'Yes'`` / ``'no.'`` -> bool; anything else is an :class:`InvalidAnswer` (never read as no)."""
    m = _YES_NO.match(text)
    if not m:
        raise InvalidAnswer(f"image verdict {text[:40]!r} is not Yes or No")
    return m.group(1).lower() == "yes"


def yes_probability(token_probs: Sequence[tuple[str, float]] | None) -> float | None:
    """P(yes) among the first token's yes/no alternatives; None when neither is among them."""
    yes = no = 0.0
    for token, p in token_probs or ():
        word = token.strip().strip(".").lower()
        yes += p if word == "yes" else 0.0
        no += p if word == "no" else 0.0
    return yes / (yes + no) if yes + no > 0 else None


def png_bytes(images) -> list[bytes]:
    """PNG bytes of each image: ``images_NWW3`` (uint8, or floats in [0, 1]) or a sequence of PNG bytes."""
    if isinstance(images, np.ndarray):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise UserError(f"images must be an array [N, W, W, 3] (RGB), got shape {list(images.shape)}")
        if images.dtype != np.uint8:
            if not np.issubdtype(images.dtype, np.floating) or not np.isfinite(images).all() \
                    or images.min(initial=0) < 0 or images.max(initial=0) > 1:
                raise UserError(f"images of dtype {images.dtype} must be uint8 or floats in [0, 1]")
            images = np.round(images * 255).astype(np.uint8)
        out = []
        for img_WW3 in images:
            buf = io.BytesIO()
            Image.fromarray(img_WW3, "RGB").save(buf, format="PNG")
            out.append(buf.getvalue())
        return out
    out = [bytes(b) for b in images]
    bad = [i for i, b in enumerate(out) if not b.startswith(PNG_SIGNATURE)]
    if bad:
        raise UserError(f"images {bad[:5]} are not PNG bytes: pass PNG files' bytes or an array [N, W, W, 3]")
    return out


def image_request(png: bytes, label: str, ask: int = 0, top_logprobs: int = 0) -> ChatRequest:
    t = load_template("judge_image")
    user = (t.user.format(label=quoted_label(label)), ImagePart(png))
    return ChatRequest((("system", t.system), ("user", user)), template=t.tag, max_tokens=t.max_tokens,
                       ask=ask, top_logprobs=top_logprobs)


class VisionJudge:
    """Asks one endpoint about images; ``client.stats`` counts requests, cache hits and tokens."""

    def __init__(self, client: EndpointClient, attempts: int = 3, top_logprobs: int = 5):
        self.client, self.attempts, self.top_logprobs, self.name = client, attempts, top_logprobs, client.name

    async def judge(self, label: str, pngs: Sequence[bytes]) -> list[ImageVerdict]:
        if not label.strip():
            raise UserError("the vision judge needs a non-empty label")
        return list(await asyncio.gather(*(self._one(png, label) for png in pngs)))

    async def _one(self, png: bytes, label: str) -> ImageVerdict:
        reasons = []
        for ask in range(self.attempts):
            try:
                answer = await self.client.ask(image_request(png, label, ask, self.top_logprobs))
            except RequestRejected as e:
                return ImageVerdict(None, None, False, f"vision judge: {e}")
            try:
                shows = parse_yes_no(answer.text)
            except InvalidAnswer as e:
                reasons.append(str(e))
                continue
            p = yes_probability(answer.token_probs)
            return ImageVerdict(shows, float(shows) if p is None else p, p is not None)
        return ImageVerdict(None, None, False, f"unusable verdict after {self.attempts} asks: {reasons[-1]}")


async def _judge(config: VisionJudgeConfig, label: str, pngs: list[bytes]) -> list[ImageVerdict]:
    cache = None if config.cache == "bypass" else AnswerCache(config.cache_dir)
    try:
        client = EndpointClient(config.endpoint, cache, config.cache)
        try:
            return await VisionJudge(client, config.answer_attempts, config.top_logprobs).judge(label, pngs)
        finally:
            await client.aclose()
    finally:
        if cache is not None:
            cache.close()


def judge_images(config: VisionJudgeConfig, label: str, images) -> list[ImageVerdict]:
    """One :class:`ImageVerdict` per image (``images_NWW3`` or PNG bytes), in order. An endpoint that cannot
    be reached raises a one-line :class:`ccs_dist.core.errors.UserError`; every answer got so far is cached."""
    return asyncio.run(_judge(config, label, png_bytes(images)))
