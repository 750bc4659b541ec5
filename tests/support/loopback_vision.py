"""The loopback server's vision answers: it decodes every image part it receives and judges it by its pixels.

A request is a vision request when a user message's content is a list of parts. Every ``image_url`` part
must be a ``data:image/png;base64,`` URI whose strict base64 decodes to a PNG (else :class:`BadImage`, which
the server answers with 400). The verdict is a colour rule over the decoded pixels, so an answer depends
on the image actually sent: for the label ``red``, ``green`` or ``blue``, P(yes) is that channel's share of
the image's mean intensity (clipped to [0.01, 0.99]), and the answer is ``Yes`` when it is above one half.
Any other label gets ``No`` at P(yes) 0.01.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import math

import numpy as np
from PIL import Image

CHANNELS = {"red": 0, "green": 1, "blue": 2}
_PREFIX = "data:image/png;base64,"


class BadImage(ValueError):
    pass


def is_vision(messages: list[dict]) -> bool:
    return any(m.get("role") == "user" and isinstance(m.get("content"), list) for m in messages)


def decode_png(url: str) -> np.ndarray:
    """The RGB pixels [W, W, 3] of a PNG data URI; BadImage when it is not one."""
    if not isinstance(url, str) or not url.startswith(_PREFIX):
        raise BadImage(f"image_url is not a base64 PNG data URI ({str(url)[:30]!r})")
    try:
        raw = base64.b64decode(url[len(_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise BadImage("image_url holds invalid base64") from None
    try:
        img = Image.open(io.BytesIO(raw))
        img.load()
    except Exception:  # noqa: BLE001 - PIL raises many kinds for a broken file
        raise BadImage("image_url does not decode to an image") from None
    if img.format != "PNG":
        raise BadImage(f"image_url decodes to {img.format}, not PNG")
    return np.asarray(img.convert("RGB"))


def pixels_digest(pixels_WW3: np.ndarray) -> tuple[int, int, str]:
    """(width, height, sha256 of the uint8 RGB bytes): what the tests compare with the images they sent."""
    a = np.ascontiguousarray(pixels_WW3, dtype=np.uint8)
    return int(a.shape[1]), int(a.shape[0]), hashlib.sha256(a.tobytes()).hexdigest()


def vision_answer(messages: list[dict]) -> tuple[str, float, list[np.ndarray], str]:
    """(answer, P(yes), decoded images, label) of a vision request; BadImage for a malformed one."""
    user = next(m for m in reversed(messages) if m.get("role") == "user" and isinstance(m.get("content"), list))
    texts, images = [], []
    for part in user["content"]:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            images.append(decode_png((part.get("image_url") or {}).get("url")))
        else:
            raise BadImage(f"unknown content part {str(part)[:40]!r}")
    if len(images) != 1:
        raise BadImage(f"expected one image part, got {len(images)}")
    line = next((ln for t in texts for ln in t.splitlines() if ln.startswith("Label:")), None)
    if line is None:
        raise BadImage("no 'Label:' line in the text part")
    label = line[len("Label:"):].strip()
    try:
        label = str(json.loads(label))
    except ValueError:
        pass
    means = images[0].reshape(-1, 3).astype(np.float64).mean(axis=0)
    ch = CHANNELS.get(label.lower())
    share = 0.0 if ch is None or means.sum() == 0 else float(means[ch] / means.sum())
    p = min(0.99, max(0.01, share))
    return ("Yes" if p > 0.5 else "No"), p, images, label


def logprobs_block(answer: str, p_yes: float) -> dict:
    """An OpenAI ``logprobs`` object: the answer token first, then both alternatives."""
    top = [{"token": "Yes", "logprob": math.log(p_yes)}, {"token": "No", "logprob": math.log(1 - p_yes)}]
    chosen = next(t for t in top if t["token"] == answer)
    return {"content": [{**chosen, "top_logprobs": top}]}
