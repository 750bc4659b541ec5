"""Decompose stage: every probe image's embedding split into per-head direct contributions (cached, sharded).

Its unit of work is one image set; the span stage reads the resulting artifact's moments, never the
model run, so an image set split into shards decomposed apart can feed it once their moments are merged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from ccs_dist.decompose import DecomposeConfig, DecompositionArtifact, decompose_image_set
from ccs_dist.images import resolve_image_set
from ccs_dist.models.loading import LoadedModel
from ccs_dist.stages.config import StageConfig
from ccs_dist.store import ArtifactStore

Layers = int | tuple[int, ...]  # the last n layers, or 0-based layer indices


class ProbeConfig(StageConfig):
    """The probe images and how they are read (job spec section ``probe``)."""

    images: str = "synthetic:256"
    batch_size: int = Field(64, ge=1)
    on_bad_image: Literal["skip", "error"] = "skip"
    workers: int | None = Field(None, ge=0)  # data-loading processes; None: min(4, cpus - 1)

    def decompose_config(self, *, layers: Layers, progress: bool) -> DecomposeConfig:
        return DecomposeConfig(layers=layers, batch_size=self.batch_size, num_workers=self.workers,
                               on_bad_image=self.on_bad_image, progress=progress)


@dataclass(frozen=True)
class DecomposeResult:
    artifact: DecompositionArtifact
    seconds: float


def decompose_stage(loaded: LoadedModel, probe: ProbeConfig, *, layers: Layers, cache_dir: str, progress: bool) -> DecomposeResult:
    t0 = time.perf_counter()
    image_set = resolve_image_set(probe.images, cache_dir)
    artifact = decompose_image_set(loaded, image_set, ArtifactStore(cache_dir), probe.decompose_config(layers=layers, progress=progress))
    return DecomposeResult(artifact, time.perf_counter() - t0)
