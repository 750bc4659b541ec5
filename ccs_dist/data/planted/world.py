"""World v3 (``plant``): 32-pixel images of one object from seven factors of 4 values each, and their captions.

Pool-named factors (:data:`POOL_FACTORS`): colour, shape, position (quadrant), size, texture (of the
background). Two hidden factors (:data:`HIDDEN_FACTORS`), rendered like the others but absent from the frozen
text side (:mod:`ccs_dist.data.planted.text`): ``bgtone`` (a tint of the background) is in no caption and
no pool line; ``rim`` (an outline round the object) is in captions but in no pool line. Every factor has
:data:`CARDINALITY` values, so no score can favour a factor for having more of them. Rendering is
vectorised numpy, deterministic in the generator it is given. The toy world of :mod:`ccs_dist.data.toy`
is untouched (the demo's ``ccs-toy/planted_v2`` is trained on it).

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ccs_dist.data.toy.world import FactorScenes

IMAGE_SIZE = 32
CARDINALITY = 4

FACTORS: dict[str, tuple[str, ...]] = {
    "colour": ("red", "green", "blue", "yellow"),
    "shape": ("circle", "square", "triangle", "cross"),
    "position": ("top left", "top right", "bottom left", "bottom right"),
    "size": ("tiny", "small", "large", "huge"),
    "texture": ("plain", "striped", "dotted", "checked"),  # of the background
    "bgtone": ("umber", "slate", "loden", "mulberry"),  # background tint: rendered, in no caption, no pool line
    "rim": ("rimless", "blackrimmed", "whiterimmed", "greyrimmed"),  # object outline: in captions, no pool line
}
FACTOR_NAMES: tuple[str, ...] = tuple(FACTORS)
POOL_FACTORS: tuple[str, ...] = ("colour", "shape", "position", "size", "texture")
HIDDEN_FACTORS: dict[str, str] = {"bgtone": "rendered", "rim": "captioned"}
CAPTION_FACTORS: tuple[str, ...] = tuple(f for f in FACTOR_NAMES if HIDDEN_FACTORS.get(f) != "rendered")

_RGB = np.array([(220, 40, 40), (40, 200, 60), (50, 80, 235), (235, 220, 50)], np.float32)
_TINT = np.array([(18, 4, -14), (-12, -2, 16), (-6, 16, -8), (14, -12, 12)], np.float32)  # bgtone, added to grey
_RIM = np.array([(0, 0, 0), (15, 15, 15), (250, 250, 250), (140, 140, 140)], np.float32)  # rimless: unused
_QUADRANT_CENTRES = np.array([(8.0, 8.0), (24.0, 8.0), (8.0, 24.0), (24.0, 24.0)], np.float32)  # (x, y)
_RADIUS = np.array([(2.6, 3.2), (3.8, 4.4), (5.0, 5.6), (6.2, 6.8)], np.float32)  # per size: pixel radius range
_JITTER = np.array([2.2, 1.6, 1.0, 0.5], np.float32)  # the centre may move this far inside its quadrant


def factor_index(factor: str, value: str) -> int:
    return FACTORS[factor].index(value)


@dataclass(frozen=True)
class Scenes(FactorScenes):
    """N world-v3 scenes."""

    FACTORS: ClassVar[Mapping[str, tuple[str, ...]]] = FACTORS


def sample_scenes(rng: np.random.Generator, n: int) -> Scenes:
    """N scenes with every factor uniform and independent."""
    return Scenes(rng.integers(0, CARDINALITY, (n, len(FACTOR_NAMES))).astype(np.int64))


def sample_contrast_groups(rng: np.random.Generator, n_groups: int, group_size: int = CARDINALITY) -> tuple[Scenes, np.ndarray]:
    """``n_groups`` groups of ``group_size`` (<= 4) scenes sharing every factor but one, which takes distinct values.

    Returns the scenes (group-major) and the varied factor's index per scene [N].
    """
    base_GF = sample_scenes(rng, n_groups).values_NF
    varied_G = rng.integers(0, len(FACTOR_NAMES), n_groups)
    values = np.repeat(base_GF, group_size, axis=0)
    choices_GK = np.argsort(rng.random((n_groups, CARDINALITY)), axis=1)[:, :group_size]
    values[np.arange(n_groups * group_size), np.repeat(varied_G, group_size)] = choices_GK.reshape(-1)
    return Scenes(values), np.repeat(varied_G, group_size).astype(np.int64)


def _texture_masks(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """[4, S, S] float: where each background texture is bright (plain: nowhere)."""
    iy, ix = yy.astype(np.int64), xx.astype(np.int64)
    stripes = ((iy // 2) % 2).astype(np.float32)
    dots = (((iy % 4) < 2) & ((ix % 4) < 2)).astype(np.float32)
    checks = (((iy // 4) + (ix // 4)) % 2).astype(np.float32)
    return np.stack([np.zeros_like(stripes), stripes, dots, checks])


def render(scenes: Scenes, rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 images [N, S, S, 3]; jitter (centre, radius, colour, noise) comes from ``rng``."""
    n, s = len(scenes), IMAGE_SIZE
    colour, shape, position, size, texture, bgtone, rim = (scenes.values_NF[:, i] for i in range(len(FACTOR_NAMES)))
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5

    level = rng.uniform(75, 100, n).astype(np.float32)
    pattern_NWW = _texture_masks(yy, xx)[texture]
    bg_NWW3 = (level[:, None, None, None] + 50.0 * pattern_NWW[..., None] - 20.0 * (texture > 0)[:, None, None, None]
               + _TINT[bgtone][:, None, None, :])

    lo, hi = _RADIUS[size, 0], _RADIUS[size, 1]
    r = (lo + (hi - lo) * rng.random(n, dtype=np.float32))[:, None, None]
    centre = _QUADRANT_CENTRES[position] + _JITTER[size][:, None] * rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    dx = xx[None] - centre[:, 0, None, None]
    dy = yy[None] - centre[:, 1, None, None]

    def masks(rr):
        adx, ady = np.abs(dx), np.abs(dy)
        return np.stack([
            dx**2 + dy**2 <= rr**2,                                                    # circle
            (adx <= 0.82 * rr) & (ady <= 0.82 * rr),                                   # square
            (dy <= 0.8 * rr) & (dy >= -rr) & (adx <= 0.58 * (dy + rr)),                # triangle, apex up
            ((adx <= 0.33 * rr) & (ady <= rr)) | ((ady <= 0.33 * rr) & (adx <= rr)),   # cross
        ])[shape, np.arange(n)]

    inner_NWW, outer_NWW = masks(r), masks(r + 1.3)
    rgb_N3 = np.clip(_RGB[colour] + rng.uniform(-18, 18, (n, 3)).astype(np.float32), 0, 255)
    img = np.where(inner_NWW[..., None], rgb_N3[:, None, None, :], bg_NWW3)
    ring_NWW = outer_NWW & ~inner_NWW & (rim > 0)[:, None, None]
    img = np.where(ring_NWW[..., None], _RIM[rim][:, None, None, :], img)
    img = img + rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def caption(values: dict[str, str]) -> str:
    """The template caption of the captioned factors given: "a greyrimmed small red triangle at the top left ..."."""
    if not values or any(f not in CAPTION_FACTORS for f in values):
        raise ValueError(f"a caption mentions at least one of {', '.join(CAPTION_FACTORS)} and nothing else")
    words = [values[f] for f in ("rim", "size", "colour") if f in values]
    words.append(values.get("shape", "object"))
    text = " ".join(words)
    text = ("an " if text[0] in "aeiou" else "a ") + text
    if "position" in values:
        text += f" at the {values['position']}"
    if "texture" in values:
        text += f" on a {values['texture']} background"
    return text


def sample_mentions(rng: np.random.Generator, n: int, always_NF: np.ndarray | None = None, p: float = 0.4) -> np.ndarray:
    """Which factors each of N captions mentions: bool [N, F], each captioned factor with probability ``p``, at least one.

    ``always_NF`` marks factors a caption must mention (a contrast group's varied factor, unless never captioned).
    """
    captioned_F = np.array([f in CAPTION_FACTORS for f in FACTOR_NAMES])
    mention = (rng.random((n, len(FACTOR_NAMES))) < p) & captioned_F
    if always_NF is not None:
        mention |= always_NF & captioned_F
    empty = ~mention.any(1)
    mention[empty, np.flatnonzero(captioned_F)[rng.integers(0, captioned_F.sum(), int(empty.sum()))]] = True
    return mention


def captions_for(scenes: Scenes, mention_NF: np.ndarray) -> list[str]:
    return [
        caption({f: FACTORS[f][int(v)] for f, v, m in zip(FACTOR_NAMES, scenes.values_NF[i], mention_NF[i]) if m})
        for i in range(len(scenes))
    ]
