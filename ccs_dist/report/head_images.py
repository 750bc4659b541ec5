"""The report's head images: the ``head_images`` table and small embedded thumbnails of its images.

Page-size budget: each thumbnail is a THUMB_PX-pixel square WebP data URI of at most THUMB_MAX_CHARS
characters (re-encoded at a lower quality when a busy image is larger), and a head card shows at most
2 * n_images thumbnails per direction (top and bottom), so with the defaults (5 images, 1 direction) a head
costs at most 10 * THUMB_MAX_CHARS (~12 KB) and less when heads share images (each image is embedded once).

Two tables go into ``RUN_DIR/tables``: ``head_images`` (model, layer, head, direction, rank, sign, image_id,
projection; see :mod:`ccs_dist.spans.head_images`) and ``head_thumbnails`` (image_id, data_uri).

``head_image_tables(model_key, artifact, image_set)`` is the per-model call a stage that holds the
decomposition makes; ``add_head_images(run_dir)`` does it for a finished run from its stage manifests,
when the decomposition is still in the cache.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any, Iterable

import polars as pl
from PIL import Image, ImageOps

from ccs_dist.artifacts.run_dir import RunDir
from ccs_dist.artifacts.schemas import read_metadata, write_table
from ccs_dist.artifacts.store import MANIFEST, read_json
from ccs_dist.data.images import resolve_image_set
from ccs_dist.decomposition.image_set import DecompositionArtifact
from ccs_dist.spans.head_images import HeadImagesConfig, head_images_table

log = logging.getLogger(__name__)

THUMB_PX = 48
THUMB_QUALITIES = (70, 45, 25)  # tried in turn until the data URI fits THUMB_MAX_CHARS
THUMB_MAX_CHARS = 1200
THUMBNAILS_SCHEMA = {"image_id": pl.String, "data_uri": pl.String}
TABLES = ("head_images", "head_thumbnails")


def thumbnail_uri(image: Image.Image, px: int = THUMB_PX) -> str:
    """A centre-cropped ``px`` x ``px`` WebP data URI (the model sees a centre crop too)."""
    small = ImageOps.fit(image.convert("RGB"), (px, px), Image.Resampling.LANCZOS)
    uri = ""
    for quality in THUMB_QUALITIES:
        buf = io.BytesIO()
        small.save(buf, "WEBP", quality=quality, method=6)
        uri = "data:image/webp;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        if len(uri) <= THUMB_MAX_CHARS:
            break
    return uri


def thumbnails_table(image_set, ids: Iterable[str]) -> pl.DataFrame:
    """``image_id -> data_uri`` for ``ids`` of ``image_set`` (unreadable images are left out, with a warning)."""
    wanted = set(ids)
    index = {image_set.image_id(i): i for i in range(len(image_set))} if wanted else {}
    rows = []
    for image_id in sorted(wanted):
        i = index.get(image_id)
        if i is None:
            log.warning("head image %s is not in %s; no thumbnail", image_id, image_set.name)
            continue
        try:
            rows.append((image_id, thumbnail_uri(image_set.load(i))))
        except Exception as e:  # noqa: BLE001 - a file that went bad since decomposition: shown without its picture
            log.warning("no thumbnail for %s (%s)", image_id, type(e).__name__)
    return pl.DataFrame(rows, schema=THUMBNAILS_SCHEMA, orient="row")


def head_image_tables(model_key: str, artifact, image_set, config: HeadImagesConfig = HeadImagesConfig()) -> dict[str, pl.DataFrame]:
    """``{"head_images": ..., "head_thumbnails": ...}`` of one model from its decomposition and probe images."""
    table = head_images_table(model_key, artifact, config)
    return {"head_images": table, "head_thumbnails": thumbnails_table(image_set, table["image_id"].unique().to_list())}


def _spans_stage_manifests(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in RunDir(run_dir).stage_manifests("spans"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
            out.append(data)
    return out


def _cache_dir(run_dir: Path) -> str | None:
    try:
        spec = json.loads(RunDir(run_dir).manifest.read_text(encoding="utf-8")).get("spec") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return spec.get("cache_dir") if isinstance(spec, dict) else None


def add_head_images(run_dir: str | Path, config: HeadImagesConfig = HeadImagesConfig()) -> list[str]:
    """Write ``head_images`` and ``head_thumbnails`` into ``RUN_DIR/tables`` from the run's decompositions.

    Each model's decomposition is found in its spans stage manifest (``RUN_DIR/stages/*/spans``); a model whose
    decomposition or probe images are gone from the cache, or whose images changed since, is left out.
    Tables already there are kept when a stage wrote them (no ``head_images`` key in their parquet metadata)
    or when this function wrote them from the same decompositions. Returns what a reader should be told
    (empty when every model got its images)."""
    run_dir = Path(run_dir)
    run = RunDir(run_dir)
    stages = _spans_stage_manifests(run_dir)
    if not stages:
        return []  # not a full-grid run directory: nothing to go on, and nothing to say
    sources = {str(s.get("model") or s["metadata"].get("model")): str(s["metadata"].get("decomposition")) for s in stages}
    wanted = {"sources": sources, "n_images": config.n_images, "n_directions": config.n_directions}
    existing, thumbs_path = run.table("head_images"), run.table("head_thumbnails")
    if existing.is_file() and thumbs_path.is_file():
        try:
            meta = read_metadata(existing)
            if "head_images" not in meta or meta["head_images"] == wanted:  # a stage wrote them, or they are current
                return list(meta.get("notes") or [])
        except Exception:  # noqa: BLE001 - an unreadable footer: rebuild
            pass
    cache_dir = _cache_dir(run_dir)
    notes: list[str] = []
    frames: dict[str, list[pl.DataFrame]] = {name: [] for name in TABLES}
    for model_key, path_text in sources.items():
        meta = next(s["metadata"] for s in stages if str(s.get("model") or s["metadata"].get("model")) == model_key)
        path = Path(path_text)
        if not (path / MANIFEST).is_file():
            notes.append(f"{model_key}: no head images: its decomposition ({path}) is no longer in the cache")
            continue
        artifact = DecompositionArtifact(path, read_json(path / MANIFEST))
        if artifact.keep == "moments":
            notes.append(f"{model_key}: no head images: its decomposition keeps only TextSpan's moments (keep: moments)")
            continue
        try:
            image_set = resolve_image_set(meta.get("images") or artifact.manifest.get("image_set"), cache_dir or "cache")
        except Exception as e:  # noqa: BLE001 - a moved dataset: say so, keep the report
            notes.append(f"{model_key}: no head images: the probe images cannot be opened ({str(e).splitlines()[0][:160]})")
            continue
        if image_set.fingerprint != artifact.manifest.get("images"):
            notes.append(f"{model_key}: no head images: the probe images changed since they were decomposed")
            continue
        for name, df in head_image_tables(model_key, artifact, image_set, config).items():
            frames[name].append(df)
    if frames["head_images"]:
        write_table(pl.concat(frames["head_images"]), existing, {"head_images": wanted, "notes": notes})
        thumbs = pl.concat(frames["head_thumbnails"]).unique("image_id", keep="first", maintain_order=True)
        write_table(thumbs, thumbs_path)
    return notes
