"""Decompose stage: every probe image's embedding split into per-head direct contributions (cached, sharded).

Its unit of work is one image set; the span stage reads the resulting artifact's moments, never the
model run, so an image set split into shards decomposed apart can feed it once their moments are merged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.image_set import DecompositionArtifact, decompose_image_set, decompose_shard
from ccs_dist.data.images import resolve_image_set
from ccs_dist.models.loading import LoadedModel
from ccs_dist.stages.config import StageConfig
from ccs_dist.artifacts.store import ArtifactStore

Layers = int | tuple[int, ...]  # the last n layers, or 0-based layer indices
_DEFAULT = DecomposeConfig()


class ProbeConfig(StageConfig):
    """The probe images and how they are read (job spec section ``probe``)."""

    images: str = "synthetic:256"
    batch_size: int = Field(64, ge=1)
    on_bad_image: Literal["skip", "error"] = "skip"
    workers: int | None = Field(None, ge=0)  # data-loading processes; None: min(4, cpus - 1)
    keep: Literal["heads", "heads_fp16", "moments"] = _DEFAULT.keep  # what the artifact keeps (moments: TextSpan's only)
    decode: Literal["cpu", "device"] = _DEFAULT.decode  # where JPEGs are decoded
    # Split the probe set into this many shards, decomposed apart and merged exactly in shard order: on Ray
    # any worker of the model takes the next shard (resumed and retried per shard); locally they run in turn.
    shards: int = Field(_DEFAULT.shards, ge=1)

    def decompose_config(self, *, layers: Layers, progress: bool, moment_buckets: int = _DEFAULT.moment_buckets,
                         moment_seed: int = _DEFAULT.moment_seed) -> DecomposeConfig:
        return DecomposeConfig(layers=layers, batch_size=self.batch_size, num_workers=self.workers,
                               on_bad_image=self.on_bad_image, progress=progress, keep=self.keep, decode=self.decode,
                               moment_buckets=moment_buckets, moment_seed=moment_seed, shards=self.shards)


@dataclass(frozen=True)
class DecomposeResult:
    artifact: DecompositionArtifact
    seconds: float


def decompose_stage(loaded: LoadedModel, probe: ProbeConfig, *, layers: Layers, cache_dir: str, progress: bool,
                    moment_buckets: int = _DEFAULT.moment_buckets, moment_seed: int = _DEFAULT.moment_seed) -> DecomposeResult:
    """``moment_buckets`` / ``moment_seed``: the stability deal of the moments kept with ``keep: moments``."""
    t0 = time.perf_counter()
    image_set = resolve_image_set(probe.images, cache_dir)
    config = probe.decompose_config(layers=layers, progress=progress, moment_buckets=moment_buckets, moment_seed=moment_seed)
    artifact = decompose_image_set(loaded, image_set, ArtifactStore(cache_dir), config)
    return DecomposeResult(artifact, time.perf_counter() - t0)


def decompose_shard_stage(loaded: LoadedModel, probe: ProbeConfig, index: int, *, layers: Layers, cache_dir: str,
                          moment_buckets: int = _DEFAULT.moment_buckets, moment_seed: int = _DEFAULT.moment_seed) -> dict:
    """Shard ``index`` of the probe set's decomposition (``probe.shards > 1``); :func:`decompose_stage` merges them."""
    image_set = resolve_image_set(probe.images, cache_dir)
    config = probe.decompose_config(layers=layers, progress=False, moment_buckets=moment_buckets, moment_seed=moment_seed)
    return decompose_shard(loaded, image_set, ArtifactStore(cache_dir), config, index)
