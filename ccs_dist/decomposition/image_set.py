"""An image set decomposed into a sharded, content-addressed artifact, resumable shard by shard.

One pass (:func:`decompose_image_set`) or shards decomposed apart by any worker sharing the store
(:func:`decompose_shard`) and merged in shard order; the streaming itself is :mod:`ccs_dist.decomposition.stream`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccs_dist.artifacts.store import ArtifactStore, atomic_write_json, content_key, read_json
from ccs_dist.core.errors import UserError
from ccs_dist.core.heads import resolve_layers
from ccs_dist.data.images import ImageSet
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.kernel import check_supported, pool_unit_kinds
from ccs_dist.decomposition.loader import LoaderStats
from ccs_dist.decomposition.moments import merge_shard_moments
from ccs_dist.decomposition.stream import stream_decomposition
from ccs_dist.models.loading import LoadedModel

log = logging.getLogger(__name__)

DECOMPOSE_VERSION = 1  # bump when the maths or the on-disk layout changes


@dataclass(frozen=True)
class DecompositionArtifact:
    """A decomposed image set on disk: shards of heads [n, L, H, E], rest [n, E], embedding [n, E], ids; for a
    tower pooled by attention (SigLIP) also pool [n, U, E], its pooling units (``pool_units``: their kinds)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(self.manifest["layers"])

    @property
    def n_images(self) -> int:
        return int(self.manifest["n_images"])

    @property
    def shard_names(self) -> list[str]:
        return list(self.manifest["shards"])

    @property
    def keep(self) -> str:
        return self.manifest.get("keep", "heads")

    @property
    def pool_units(self) -> tuple[str, ...]:
        """The kinds of the attention pooling's units, after the heads on the unit axis (none for class-token towers)."""
        return tuple(self.manifest.get("pool_units", ()))

    def load_shard(self, name: str, mmap: bool = True) -> dict[str, np.ndarray]:
        """heads [n, L, H, E] and pool [n, U, E] (absent when only moments were kept), rest [n, E], embedding [n, E]."""
        mode = "r" if mmap else None
        parts = ("rest", "embedding") if self.keep == "moments" else ("heads", "rest", "embedding")
        if self.pool_units and self.keep != "moments":
            parts += ("pool",)
        return {part: np.load(self.path / f"{part}-{name}.npy", mmap_mode=mode) for part in parts}

    def ids(self) -> list[str]:
        out: list[str] = []
        for name in self.shard_names:
            out.extend((self.path / f"ids-{name}.txt").read_text(encoding="utf-8").splitlines())
        return out

    def iter_heads(self):
        """Yield heads [n, L, H, E] (memory-mapped) shard by shard: memory stays flat in N."""
        if self.keep == "moments":
            raise UserError(f"{self.path} keeps only TextSpan's moments, not each image's heads: decompose again with keep='heads'")
        for name in self.shard_names:
            yield self.load_shard(name)["heads"]

    def head(self, layer: int, head: int) -> np.ndarray:
        """One head's contributions over all images: [N, E] (loads only that slice)."""
        li = self.layers.index(layer)
        return np.concatenate([h[:, li, head] for h in self.iter_heads()], axis=0)


def _refuse_skipped(skipped: Sequence[dict]) -> None:
    """``on_bad_image="error"`` over work that skipped files: stop at the first, as a fresh run would.

    (The policy is kept out of the cache key on purpose: when no file is bad both policies give the same
    arrays, so artifacts cached before stay valid.)"""
    if skipped:
        first = skipped[0]
        raise UserError(
            f"unreadable image {first.get('id')} ({first.get('error')}; {len(skipped)} skipped in all by an earlier "
            "--on-bad-image skip run): fix or remove it, or pass --on-bad-image skip to skip unreadable files"
        )


def decomposition_key(loaded: LoadedModel, image_set: ImageSet, layers: tuple[int, ...], config: DecomposeConfig | None = None) -> dict[str, Any]:
    kept: dict[str, Any] = {}  # absent for the defaults, so artifacts cached before stay valid
    if config is not None and config.shards > 1:
        kept["shards"] = config.shards
    if config is not None and config.decode != "cpu":
        kept["decode"] = config.decode
    if config is not None and config.keep != "heads":
        kept["keep"] = config.keep
        if config.keep == "moments":
            kept["moment_buckets"], kept["moment_seed"] = config.moment_buckets, config.moment_seed
    if pool_unit_kinds(loaded):
        kept["pool_units"] = list(pool_unit_kinds(loaded))
    return {
        **kept,
        "version": DECOMPOSE_VERSION,
        "model": loaded.key,
        "weights": loaded.weights_hash,
        "images": image_set.fingerprint,
        "n_images": len(image_set),
        "layers": list(layers),
        "preprocess": repr(loaded.preprocess),
        "precision": loaded.precision,
    }


def decompose_image_set(
    loaded: LoadedModel,
    image_set: ImageSet,
    store: ArtifactStore,
    config: DecomposeConfig = DecomposeConfig(),
    *,
    stats: LoaderStats | None = None,
) -> DecompositionArtifact:
    """Decompose every image of ``image_set`` into a sharded artifact (reused when it already exists).

    Shards are written atomically as they finish; an interrupted run resumes from the last finished shard.
    Unreadable images are skipped and listed in the manifest (or abort, with ``on_bad_image="error"``).
    ``stats``: filled with where the time went (loader waits, time to the first batch).
    """
    check_supported(loaded)
    layers = resolve_layers(config.layers, loaded.num_layers)
    key_parts = decomposition_key(loaded, image_set, layers, config)
    key = content_key(key_parts)
    found = store.find("decompose", key)
    if found is not None:
        manifest = read_json(found / "manifest.json")
        if config.on_bad_image == "error":  # the policy is not in the key: a skip run's artifact must not pass
            _refuse_skipped(manifest.get("skipped", []))
        log.info("decomposition of %s on %s reused from %s", image_set.name, loaded.key, found)
        return DecompositionArtifact(found, manifest)

    work = store.begin("decompose", key)
    if config.shards > 1:
        return _decompose_sharded(loaded, image_set, store, config, key, key_parts, work, stats)
    progress_path = work / "progress.json"
    progress = read_json(progress_path) if progress_path.is_file() else {}
    # A moments-only run keeps its running moments in memory: an interrupted one starts again.
    if progress.get("shard_size") != config.shard_size or config.keep == "moments":
        progress = {"shard_size": config.shard_size, "shards": [], "skipped": [], "n_images": 0}
    if config.on_bad_image == "error":  # resuming the shards of an interrupted skip run
        _refuse_skipped(progress["skipped"])

    moment_part = stream_decomposition(loaded, image_set, layers, config, work, progress, stats=stats)
    progress_path.unlink()
    return _commit(loaded, image_set, store, config, key, key_parts, progress, moment_part)


def _commit(loaded, image_set, store, config, key, key_parts, progress, moment_part) -> DecompositionArtifact:
    if progress["n_images"] == 0:
        raise UserError(f"no readable image in {image_set.name}: every file failed to load (see the warnings above)")
    if progress["skipped"]:
        log.warning("%d unreadable image(s) skipped; listed in the manifest", len(progress["skipped"]))
    manifest = {
        **key_parts,
        "model_metadata": loaded.metadata(),
        "image_set": image_set.name,
        "num_heads": loaded.num_heads,
        "embed_dim": loaded.embed_dim,
        "n_images": progress["n_images"],
        "skipped": progress["skipped"],
        "shards": [s for s in progress["shards"] if s is not None],
        "keep": config.keep,
        **moment_part,
    }
    final = store.commit("decompose", key, manifest)
    log.info("decomposed %d images of %s into %s", manifest["n_images"], image_set.name, final)
    return DecompositionArtifact(final, manifest)


# --------------------------------------------------------------------------------------------------------
# A sharded decomposition: shards decomposed apart (in any order, by any worker sharing the store), merged


def _shard_record_path(work: Path, index: int) -> Path:
    return work / f"shard-{index:05d}.json"


def decompose_shard(
    loaded: LoadedModel, image_set: ImageSet, store: ArtifactStore, config: DecomposeConfig, index: int
) -> dict[str, Any]:
    """Decompose shard ``index`` of a sharded decomposition (``config.shards > 1``) into the artifact's work
    folder, unless it is there already or the artifact is complete. -> the shard's record (its images,
    skipped files, moments counts). Workers on several machines may run the shards of one artifact when the
    store is on storage they all see; :func:`decompose_image_set` merges them."""
    if config.shards < 2 or not 0 <= index < config.shards:
        raise UserError(f"shard {index} of a decomposition into {config.shards} shards: use 0..{config.shards - 1} with shards > 1")
    check_supported(loaded)
    layers = resolve_layers(config.layers, loaded.num_layers)
    config = config.for_images(len(image_set))
    key = content_key(decomposition_key(loaded, image_set, layers, config))
    if store.exists("decompose", key):
        return {"index": index, "reused": "artifact"}
    if index * config.shard_size >= len(image_set):  # fewer images than shards: this one is empty
        return {"index": index, "n_images": 0, "reused": "empty"}
    work = store.begin("decompose", key)
    record = _shard(loaded, image_set, layers, config, work, index)
    store.publish_partial("decompose", key, _is_shard_record)  # a remote root: the worker merging them takes it from there
    return record


def _is_shard_record(name: str) -> bool:
    return name.startswith("shard-") and name.endswith(".json")


def _shard(loaded, image_set, layers, config, work: Path, index: int, stats: LoaderStats | None = None) -> dict[str, Any]:
    record_path = _shard_record_path(work, index)
    if record_path.is_file():
        return {**read_json(record_path), "reused": "shard"}

    progress = {"shard_size": config.shard_size, "shards": [], "skipped": [], "n_images": 0}
    moment_part = stream_decomposition(loaded, image_set, layers, config, work, progress, stats=stats, only_shard=index)
    record = {"index": index, "name": progress["shards"][0] if progress["shards"] else None, "n_images": progress["n_images"],
              "skipped": progress["skipped"], **moment_part}
    atomic_write_json(record_path, record)  # last: the shard counts as done only once everything is written
    (work / f"progress-{index:05d}.json").unlink(missing_ok=True)
    return record


def _decompose_sharded(loaded, image_set, store, config, key, key_parts, work: Path, stats) -> DecompositionArtifact:
    """Every shard not yet in ``work`` decomposed here, in order; then all merged in shard order."""
    layers = tuple(key_parts["layers"])
    config = config.for_images(len(image_set))
    n_shards = -(-len(image_set) // config.shard_size)
    store.fetch_partial("decompose", key, _is_shard_record)  # shards other nodes published to a remote root
    records = [_shard(loaded, image_set, layers, config, work, i, stats) for i in range(n_shards)]
    if config.on_bad_image == "error":
        _refuse_skipped([s for r in records for s in r["skipped"]])
    progress = {"shards": [r["name"] for r in records], "skipped": [s for r in records for s in r["skipped"]],
                "n_images": sum(r["n_images"] for r in records)}
    moment_part: dict[str, Any] = {}
    if config.keep == "moments":
        moment_part = merge_shard_moments(work, [(f"{r['index']:05d}-", r["moment_counts"]) for r in records if r.get("moment_counts")])
    for i in range(n_shards):
        _shard_record_path(work, i).unlink()
    return _commit(loaded, image_set, store, config, key, key_parts, progress, moment_part)
