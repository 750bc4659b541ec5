"""Procedurally generated probe images written as real PNG files (the offline default and the tests).

Each image: a background texture (solid, gradient, stripes, checkerboard, dots, noise) in one colour, and
either 1-6 copies of a shape in another colour or a large digit/letter. ``labels.csv`` records all of it.
Deterministic in (seed, size) per image index: image i is the same in every set of at least i + 1 images.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ccs_dist.artifacts.store import atomic_write_bytes
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

COLOURS = {
    "red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 210), "yellow": (240, 220, 40),
    "orange": (245, 140, 30), "purple": (130, 50, 170), "pink": (240, 130, 190), "brown": (120, 75, 40),
    "black": (15, 15, 15), "white": (245, 245, 245), "grey": (128, 128, 128), "cyan": (40, 200, 220),
}
TEXTURES = ("solid", "gradient", "stripes", "checkerboard", "dots", "noise")
SHAPES = ("circle", "square", "triangle", "star", "ellipse", "cross")
GLYPHS = tuple("0123456789ABCDEFGHKMPRSTXZ")


def _background(rng: np.random.Generator, size: int, texture: str, rgb: tuple[int, int, int]) -> Image.Image:
    base = np.array(rgb, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if texture == "solid":
        shade = np.ones((size, size), np.float32)
    elif texture == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        shade = 0.45 + 0.55 * ((np.cos(angle) * xx + np.sin(angle) * yy) % 1.0)
    elif texture == "stripes":
        period = rng.integers(6, 24)
        shade = np.where(((xx + yy * rng.uniform(-1, 1)) * size // period) % 2 == 0, 1.0, 0.45)
    elif texture == "checkerboard":
        cell = rng.integers(8, 40)
        shade = np.where(((xx * size // cell) + (yy * size // cell)) % 2 == 0, 1.0, 0.4)
    elif texture == "dots":
        cell = int(rng.integers(10, 28))
        d = np.hypot((xx * size) % cell - cell / 2, (yy * size) % cell - cell / 2)
        shade = np.where(d < cell / 4, 0.4, 1.0)
    else:  # noise
        shade = 0.5 + 0.5 * rng.random((size, size), dtype=np.float32)
    pixels = np.clip(base[None, None, :] * shade[..., None], 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "ellipse":
        draw.ellipse([cx - r, cy - r * 0.55, cx + r, cy + r * 0.55], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r * 0.95, cy + r * 0.8), (cx + r * 0.95, cy + r * 0.8)], fill=fill)
    elif shape == "cross":
        w = r * 0.35
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    else:  # star
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.45
            a = -math.pi / 2 + k * math.pi / 5
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a)))
        draw.polygon(pts, fill=fill)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


def render_synthetic_image(rng: np.random.Generator, size: int) -> tuple[Image.Image, dict[str, str]]:
    names = list(COLOURS)
    bg_name = names[rng.integers(len(names))]
    fg_name = names[rng.integers(len(names))]
    while fg_name == bg_name:
        fg_name = names[rng.integers(len(names))]
    texture = TEXTURES[rng.integers(len(TEXTURES))]
    image = _background(rng, size, texture, COLOURS[bg_name])
    draw = ImageDraw.Draw(image)
    label = {"background": bg_name, "texture": texture, "colour": fg_name, "shape": "", "count": "0", "glyph": ""}
    if rng.random() < 0.3:
        glyph = GLYPHS[rng.integers(len(GLYPHS))]
        font = _font(int(size * 0.7))
        box = draw.textbbox((0, 0), glyph, font=font)
        x = (size - (box[2] - box[0])) / 2 - box[0]
        y = (size - (box[3] - box[1])) / 2 - box[1]
        draw.text((x, y), glyph, fill=COLOURS[fg_name], font=font)
        label["glyph"] = glyph
    else:
        shape = SHAPES[rng.integers(len(SHAPES))]
        count = int(rng.integers(1, 7))
        r = size * (0.3 if count == 1 else 0.13)
        for _ in range(count):
            cx, cy = rng.uniform(r, size - r, size=2)
            _draw_shape(draw, shape, cx, cy, r, COLOURS[fg_name])
        label["shape"], label["count"] = shape, str(count)
    return image, label


def image_rng(seed: int, index: int) -> np.random.Generator:
    """Image ``index``'s own generator: any image can be drawn alone, so the set is written in parallel and
    ``synthetic:N`` is the first N images of ``synthetic:M`` for every M > N."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def _write_range(folder: Path, lo: int, hi: int, seed: int, size: int) -> list[dict[str, str]]:
    rows = []
    for i in range(lo, hi):
        image, label = render_synthetic_image(image_rng(seed, i), size)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        name = f"{i:06d}.png"
        atomic_write_bytes(folder / name, buf.getvalue())
        rows.append({"file": name, **label})
    return rows


def write_synthetic_images(folder: Path, n: int, seed: int, size: int, progress: bool = True, workers: int | None = None) -> None:
    """Write ``n`` PNG files ``{i:06d}.png`` and ``labels.csv`` into ``folder``, in ``workers`` processes
    (default: one per CPU; small sets are written in this process)."""

    from tqdm.auto import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = max(1, min(workers or cpus, n // 128))  # a worker costs ~1 s to start: only for larger sets
    chunk = 64
    ranges = [(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    by_range: dict[int, list[dict[str, str]]] = {}
    with tqdm(total=n, desc="write probe images", unit="img", disable=None if progress else True) as bar:
        if workers == 1:
            for lo, hi in ranges:
                by_range[lo] = _write_range(folder, lo, hi, seed, size)
                bar.update(hi - lo)
        else:
            # spawn, not fork: the caller may hold torch's thread pools, which a forked child must not inherit
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = {pool.submit(_write_range, folder, lo, hi, seed, size): (lo, hi) for lo, hi in ranges}
                from concurrent.futures import as_completed

                for future in as_completed(futures):
                    lo, hi = futures[future]
                    by_range[lo] = future.result()
                    bar.update(hi - lo)
    rows = [row for lo, _ in ranges for row in by_range[lo]]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(folder / "labels.csv", out.getvalue().encode("utf-8"))
