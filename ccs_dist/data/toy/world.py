"""The toy world: 32-pixel images of one object drawn from five known factors, and their captions.

A scene is one value per factor (:data:`FACTORS`): colour, shape, position (image quadrant), size and
texture (of the background: plain or striped). Rendering is vectorised numpy, deterministic in the generator it is given.
A caption mentions a subset of the factors ("a small red triangle at the top left on a striped
background", "a red object", "an object at the bottom right"); a caption is *consistent* with an image
when every factor it mentions has the image's value.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

IMAGE_SIZE = 32

FACTORS: dict[str, tuple[str, ...]] = {
    "colour": ("red", "green", "blue", "yellow", "purple", "white"),
    "shape": ("circle", "square", "triangle", "cross"),
    "position": ("top left", "top right", "bottom left", "bottom right"),
    "size": ("small", "large"),
    "texture": ("plain", "striped"),  # of the background
}
FACTOR_NAMES: tuple[str, ...] = tuple(FACTORS)

_RGB = np.array([(220, 40, 40), (40, 200, 60), (50, 80, 235), (235, 220, 50), (165, 60, 205), (240, 240, 240)],
                np.float32)
_QUADRANT_CENTRES = np.array([(8.0, 8.0), (24.0, 8.0), (8.0, 24.0), (24.0, 24.0)], np.float32)  # (x, y)
_RADIUS = {0: (3.5, 4.5), 1: (6.3, 7.3)}  # small, large: pixel radius range
_JITTER = {0: 2.0, 1: 0.6}  # the centre may move this far (pixels) inside its quadrant


def factor_index(factor: str, value: str) -> int:
    return FACTORS[factor].index(value)


@dataclass(frozen=True)
class FactorScenes:
    """N scenes of a world whose factors are the class's ``FACTORS``: ``values_NF[n, f]`` indexes the f-th factor's values."""

    FACTORS: ClassVar[Mapping[str, tuple[str, ...]]]
    values_NF: np.ndarray

    def __len__(self) -> int:
        return int(self.values_NF.shape[0])

    def column(self, factor: str) -> np.ndarray:
        return self.values_NF[:, list(self.FACTORS).index(factor)]

    def value_names(self, n: int) -> dict[str, str]:
        return {f: self.FACTORS[f][int(v)] for f, v in zip(self.FACTORS, self.values_NF[n])}


@dataclass(frozen=True)
class Scenes(FactorScenes):
    """N toy-world scenes."""

    FACTORS: ClassVar[Mapping[str, tuple[str, ...]]] = FACTORS


def sample_scenes(rng: np.random.Generator, n: int) -> Scenes:
    """N scenes with every factor uniform and independent."""
    cols = [rng.integers(0, len(FACTORS[f]), n) for f in FACTOR_NAMES]
    return Scenes(np.stack(cols, axis=1).astype(np.int64))


def sample_contrast_groups(rng: np.random.Generator, n_groups: int, group_size: int = 4) -> tuple[Scenes, np.ndarray]:
    """``n_groups`` groups of scenes that share every factor but one, which takes distinct values.

    The varied factor is drawn per group (uniform over factors). Such hard negatives are what teach the
    network factors it could otherwise ignore (position, with a fixed position embedding). Returns the
    scenes (group-major) and the varied factor's index per scene [N].
    """
    base = sample_scenes(rng, n_groups).values_NF
    values, varied = [], []
    for g in range(n_groups):
        f = int(rng.integers(0, len(FACTOR_NAMES)))
        k = len(FACTORS[FACTOR_NAMES[f]])
        choices = rng.permutation(k) if k >= group_size else rng.permutation(np.resize(np.arange(k), group_size))
        for v in choices[:group_size]:
            row = base[g].copy()
            row[f] = v
            values.append(row)
            varied.append(f)
    return Scenes(np.stack(values)), np.array(varied, np.int64)


def render(scenes: Scenes, rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 images [N, S, S, 3]; jitter (centre, radius, colour, noise) comes from ``rng``."""
    n, s = len(scenes), IMAGE_SIZE
    colour, shape, position, size, texture = (scenes.values_NF[:, i] for i in range(5))
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5

    stripes = ((yy.astype(np.int64) // 2) % 2).astype(np.float32)  # horizontal stripes, period 4 px
    level = rng.uniform(70, 100, n).astype(np.float32)
    bg_NWW = level[:, None, None] + np.where(texture[:, None, None] == 1, 55.0 * stripes[None] - 25.0, 0.0)

    lo = np.array([_RADIUS[0][0], _RADIUS[1][0]], np.float32)[size]
    hi = np.array([_RADIUS[0][1], _RADIUS[1][1]], np.float32)[size]
    r = (lo + (hi - lo) * rng.random(n, dtype=np.float32))[:, None, None]
    jitter = np.array([_JITTER[0], _JITTER[1]], np.float32)[size][:, None]
    centre = _QUADRANT_CENTRES[position] + jitter * rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    dx = xx[None] - centre[:, 0, None, None]
    dy = yy[None] - centre[:, 1, None, None]
    adx, ady = np.abs(dx), np.abs(dy)
    masks = np.stack([
        dx**2 + dy**2 <= r**2,                                                         # circle
        (adx <= 0.82 * r) & (ady <= 0.82 * r),                                         # square
        (dy <= 0.8 * r) & (dy >= -r) & (adx <= 0.58 * (dy + r)),                       # triangle, apex up
        ((adx <= 0.33 * r) & (ady <= r)) | ((ady <= 0.33 * r) & (adx <= r)),           # cross
    ])
    mask_NWW = masks[shape, np.arange(n)]

    rgb_N3 = np.clip(_RGB[colour] + rng.uniform(-18, 18, (n, 3)).astype(np.float32), 0, 255)
    img = np.where(mask_NWW[..., None], rgb_N3[:, None, None, :], bg_NWW[..., None])
    img = img + rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def caption(values: dict[str, str]) -> str:
    """The template caption of the factors given (any subset, at least one): "a small red triangle at ..."."""
    if not values:
        raise ValueError("a caption mentions at least one factor")
    words = [values[f] for f in ("size", "colour") if f in values]
    words.append(values.get("shape", "object"))
    text = " ".join(words)
    text = ("an " if text[0] in "aeiou" else "a ") + text
    if "position" in values:
        text += f" at the {values['position']}"
    if "texture" in values:
        text += f" on a {values['texture']} background"
    return text


def sample_mentions(rng: np.random.Generator, n: int, always_NF: np.ndarray | None = None, p: float = 0.4) -> np.ndarray:
    """Which factors each of N captions mentions: bool [N, F], each factor with probability ``p``, at least one.

    ``always_NF`` marks factors a caption must mention (the varied factor of a contrast group).
    """
    mention = rng.random((n, len(FACTOR_NAMES))) < p
    if always_NF is not None:
        mention |= always_NF
    empty = ~mention.any(1)
    mention[empty, rng.integers(0, len(FACTOR_NAMES), int(empty.sum()))] = True
    return mention


def captions_for(scenes: Scenes, mention_NF: np.ndarray) -> list[str]:
    return [
        caption({f: FACTORS[f][int(v)] for f, v, m in zip(FACTOR_NAMES, scenes.values_NF[i], mention_NF[i]) if m})
        for i in range(len(scenes))
    ]


def consistency(caption_values_TF: np.ndarray, mention_TF: np.ndarray, image_values_NF: np.ndarray) -> np.ndarray:
    """bool [T, N]: caption t is true of image n (every factor it mentions matches)."""
    equal_TNF = caption_values_TF[:, None, :] == image_values_NF[None, :, :]
    return (equal_TNF | ~mention_TF[:, None, :]).all(-1)


def single_factor_prompt(factor: str, value: str) -> str:
    """The caption that names one factor only: the zero-shot class prompt of the ``toy-<factor>`` task."""
    return caption({factor: value})
