"""How an image set is decomposed: batches, shards, what the artifact keeps, where JPEGs are decoded.

:class:`DecomposeConfig` is also the job spec section ``probe`` and the probe flags of ``ccs-dist decompose`` /
``textspan`` (:mod:`ccs_dist.stages.config`): a field's ``metadata`` holds its help and the edge's checks;
``internal`` fields are set by the stage (the layers, the moments' deal, progress), never by a spec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from ccs_dist.core.errors import UserError

KEEP_MODES = ("heads", "heads_fp16", "moments")


@dataclass(frozen=True)
class DecomposeConfig:
    images: str = field(default="synthetic:256", metadata={"help": (
        "probe images: synthetic:N[:SEED], toy:N[:SEED] (the ccs-toy world, factors in labels.csv), a folder (flat or "
        "one sub-folder per class), folder:PATH, or NAME:ROOT for a torchvision dataset (cifar10, cifar100, imagenet, "
        "food101, stl10)")})
    batch_size: int = field(default=64, metadata={"ge": 1, "help": "images per forward pass"})
    on_bad_image: Literal["skip", "error"] = field(default="skip", metadata={
        "help": "skip (skip and count unreadable files) or error (stop at the first one)"})
    workers: int | None = field(default=None, metadata={"ge": 0, "help": "data-loading worker processes (none: min(4, cpus - 1))"})
    # What the artifact keeps of the heads: fp32 terms, fp16 terms, or only TextSpan's per-head moments
    # (count, sum, Gram per stability bucket; see ccs_dist.decomposition.moments). Spans from "moments" equal "heads".
    keep: Literal["heads", "heads_fp16", "moments"] = field(default="heads", metadata={"help": (
        "what the cached decomposition keeps: heads (fp32 per-head terms), heads_fp16 (half the disk), or moments "
        "(each head's count, sum and Gram per stability bucket: all TextSpan needs, constant in N)")})
    # Where JPEGs are decoded: "cpu" (PIL in the loader workers) or "device" (batched on the model's device,
    # nvJPEG on CUDA; other formats stay on the CPU path). Part of the cache key: resampling rounding differs.
    decode: Literal["cpu", "device"] = field(default="cpu", metadata={
        "help": "where JPEGs are decoded: cpu (loader workers) or device (torchvision's decoder on the model's device)"})
    # Split the image set into this many equal shards, each decomposed apart (:func:`decompose_shard`, by any
    # worker) and merged in shard order; > 1 replaces ``shard_size`` and is part of the cache key.
    shards: int = field(default=1, metadata={"ge": 1, "help": (
        "split the probe set into this many shards, decomposed apart and merged exactly in shard order (on Ray any "
        "worker of the model takes the next shard)")})
    # Set by the stage (the spec's top-level layers / the command's --layers; the span stage's stability deal):
    layers: int | tuple[int, ...] = field(default=4, metadata={"internal": True})
    shard_size: int = field(default=2048, metadata={"internal": True})  # images per shard file
    progress: bool = field(default=True, metadata={"internal": True})
    moment_buckets: int = field(default=10, metadata={"internal": True})  # stability buckets kept with "moments" (0: none)
    moment_seed: int = field(default=0, metadata={"internal": True})  # their deal's seed (the spans stage's stability seed)

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
