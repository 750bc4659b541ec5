"""Decompose stage: every probe image's embedding split into per-head direct contributions (cached, sharded).

Its unit of work is one image set; the span stage reads the resulting artifact's moments, never the
model run, so an image set split into shards decomposed apart can feed it once their moments are merged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import replace

from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.decomposition.image_set import DecompositionArtifact, decompose_image_set, decompose_shard
from ccs_dist.data.images import resolve_image_set
from ccs_dist.models.loading import LoadedModel
from ccs_dist.artifacts.store import ArtifactStore

Layers = int | tuple[int, ...]  # the last n layers, or 0-based layer indices
_DEFAULT = DecomposeConfig()


def _for_stage(probe: DecomposeConfig, *, layers: Layers, progress: bool, moment_buckets: int, moment_seed: int) -> DecomposeConfig:
    """The probe section with what the stage sets (``internal`` fields): the layers, progress, the moments' deal."""
    return replace(probe, layers=layers, progress=progress, moment_buckets=moment_buckets, moment_seed=moment_seed)


@dataclass(frozen=True)
class DecomposeResult:
    artifact: DecompositionArtifact
    seconds: float


def decompose_stage(loaded: LoadedModel, probe: DecomposeConfig, *, layers: Layers, cache_dir: str, progress: bool,
                    moment_buckets: int = _DEFAULT.moment_buckets, moment_seed: int = _DEFAULT.moment_seed) -> DecomposeResult:
    """``moment_buckets`` / ``moment_seed``: the stability deal of the moments kept with ``keep: moments``."""
    t0 = time.perf_counter()
    image_set = resolve_image_set(probe.images, cache_dir)
    config = _for_stage(probe, layers=layers, progress=progress, moment_buckets=moment_buckets, moment_seed=moment_seed)
    artifact = decompose_image_set(loaded, image_set, ArtifactStore(cache_dir), config)
    return DecomposeResult(artifact, time.perf_counter() - t0)


def decompose_shard_stage(loaded: LoadedModel, probe: DecomposeConfig, index: int, *, layers: Layers, cache_dir: str,
                          moment_buckets: int = _DEFAULT.moment_buckets, moment_seed: int = _DEFAULT.moment_seed) -> dict:
    """Shard ``index`` of the probe set's decomposition (``probe.shards > 1``); :func:`decompose_stage` merges them."""
    image_set = resolve_image_set(probe.images, cache_dir)
    config = _for_stage(probe, layers=layers, progress=False, moment_buckets=moment_buckets, moment_seed=moment_seed)
    return decompose_shard(loaded, image_set, ArtifactStore(cache_dir), config, index)
