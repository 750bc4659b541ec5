"""How an image set is decomposed: batches, shards, what the artifact keeps, where JPEGs are decoded."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from ccs_dist.core.errors import UserError

KEEP_MODES = ("heads", "heads_fp16", "moments")


@dataclass(frozen=True)
class DecomposeConfig:
    layers: int | tuple[int, ...] = 4
    batch_size: int = 64
    num_workers: int | None = None  # None: min(4, cpus - 1)
    shard_size: int = 2048  # images per shard file
    on_bad_image: Literal["skip", "error"] = "skip"
    progress: bool = True
    # What the artifact keeps of the heads: fp32 terms, fp16 terms, or only TextSpan's per-head moments
    # (count, sum, Gram per stability bucket; see ccs_dist.decomposition.moments). Spans from "moments" equal "heads".
    keep: Literal["heads", "heads_fp16", "moments"] = field(default="heads", kw_only=True)
    moment_buckets: int = field(default=10, kw_only=True)  # stability buckets kept with "moments" (0: none)
    moment_seed: int = field(default=0, kw_only=True)  # their deal's seed (the spans stage's stability seed)
    # Where JPEGs are decoded: "cpu" (PIL in the loader workers) or "device" (batched on the model's device,
    # nvJPEG on CUDA; other formats stay on the CPU path). Part of the cache key: resampling rounding differs.
    decode: Literal["cpu", "device"] = field(default="cpu", kw_only=True)
    # Split the image set into this many equal shards, each decomposed apart (:func:`decompose_shard`, by any
    # worker) and merged in shard order; > 1 replaces ``shard_size`` and is part of the cache key.
    shards: int = field(default=1, kw_only=True)

    def __post_init__(self):
        if self.keep not in KEEP_MODES:
            raise UserError(f"unknown keep mode {self.keep!r}: use one of {', '.join(KEEP_MODES)}")
        if self.decode not in ("cpu", "device"):
            raise UserError(f"unknown decode {self.decode!r}: use cpu or device")
        if self.shards < 1:
            raise UserError(f"shards={self.shards}: use 1 (one pass) or more")

    def for_images(self, n_images: int) -> DecomposeConfig:
        """The config with the shard size a sharded decomposition of ``n_images`` uses (unchanged when unsharded)."""
        if self.shards == 1:
            return self
        return dataclasses.replace(self, shard_size=max(1, -(-n_images // self.shards)))
