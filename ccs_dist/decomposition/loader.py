"""Probe images -> model batches: one persistent loader over a whole image set, every worker busy.

Workers decode and preprocess single images and return small micro-batches (collated in the worker), so
a model batch is spread over all workers instead of one worker assembling it alone; the loader is built
once for the whole run (no drain at shard boundaries) and keeps ``prefetch`` model batches in flight.
On CUDA the micro-batches arrive pinned and are copied to the device without blocking, then joined there.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch

from ccs_dist.data.images import ImageSet
from ccs_dist.decomposition.device_decode import EncodedDataset, TensorPreprocess, collate_encoded, decode_on_device

MAX_MICRO_BATCH = 64  # images a worker decodes per task: small enough that every worker shares each model batch


class ProbeDataset(torch.utils.data.Dataset):
    """Image ``index`` -> (preprocessed [C, Y, X] or None, index, error text); a bad file is reported, not raised."""

    def __init__(self, image_set: ImageSet, transform):
        self.image_set, self.transform = image_set, transform

    def __len__(self) -> int:
        return len(self.image_set)

    def __getitem__(self, index: int):
        try:
            return self.transform(self.image_set.load(index)), index, ""
        except Exception as e:  # unreadable or corrupt file: reported, then skipped or fatal by config
            return None, index, f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"


def collate(items):
    """-> (images [B, C, Y, X] of the readable items or None, their indices, [(index, error)] of the others)."""
    good = [(x, i) for x, i, err in items if x is not None]
    bad = [(i, err) for x, i, err in items if x is None]
    images = torch.stack([x for x, _ in good]) if good else None
    return images, [i for _, i in good], bad


def _one_thread_per_worker(_worker_id: int) -> None:
    torch.set_num_threads(1)  # the workers are the parallelism; intra-op threads would oversubscribe the cores


@dataclass(frozen=True)
class ModelBatch:
    shard: int
    images_B3WW: torch.Tensor | None  # on the target device; None when every image of the batch was unreadable
    indices: list[int]
    bad: list[tuple[int, str]]
    last_of_shard: bool


@dataclass
class LoaderStats:
    """Where the main process spent its time: waiting on the loader, and until the first batch arrived."""

    started: float = field(default_factory=time.perf_counter)
    wait_s: float = 0.0
    first_batch_s: float | None = None
    images: int = 0


def micro_batch_size(batch_size: int, workers: int) -> int:
    return max(1, min(batch_size, MAX_MICRO_BATCH, math.ceil(batch_size / max(workers, 1))))


class _MicroBatchPlan:
    """The micro-batches (index lists) of ``shards`` in order, generated lazily (memory stays flat in N): each
    shard is cut into model batches of ``batch_size`` images, each model batch into micro-batches."""

    def __init__(self, shards: Sequence[tuple[int, range]], batch_size: int, micro: int):
        self.shards, self.batch_size, self.micro = shards, batch_size, micro

    def steps(self) -> Iterator[tuple[int, list[int], bool, bool]]:
        """(shard, indices, whether it ends a model batch, whether it ends the shard)."""
        for shard, indices in self.shards:
            for lo in range(0, len(indices), self.batch_size):
                batch = indices[lo : lo + self.batch_size]
                for mlo in range(0, len(batch), self.micro):
                    end_batch = mlo + self.micro >= len(batch)
                    yield shard, list(batch[mlo : mlo + self.micro]), end_batch, end_batch and lo + self.batch_size >= len(indices)

    def __iter__(self) -> Iterator[list[int]]:
        return (indices for _, indices, _, _ in self.steps())


def model_batches(
    image_set: ImageSet,
    transform,
    shards: Sequence[tuple[int, range]],
    batch_size: int,
    workers: int,
    device: torch.device,
    prefetch_batches: int = 2,
    stats: LoaderStats | None = None,
    decode: str = "cpu",
) -> Iterator[ModelBatch]:
    """Model batches of the images of ``shards`` ((shard number, image indices) in order); a batch never
    spans two shards, and the last batch of each shard says so (also when all its images were unreadable).
    ``decode="device"``: workers read JPEG bytes, decoded and preprocessed on ``device`` (:mod:`ccs_dist.decomposition.device_decode`)."""
    micro = micro_batch_size(batch_size, workers)
    plan = _MicroBatchPlan(shards, batch_size, micro)
    if not any(len(indices) for _, indices in shards):
        return
    pin = device.type == "cuda"
    extra = {}
    if workers > 0:
        in_flight = max(2, math.ceil(prefetch_batches * batch_size / (micro * workers)))
        extra = {"prefetch_factor": in_flight, "persistent_workers": True, "worker_init_fn": _one_thread_per_worker}
    dataset, collate_fn, finish = ProbeDataset(image_set, transform), collate, None
    if decode == "device":
        prep = TensorPreprocess.from_transform(transform)
        dataset, collate_fn = EncodedDataset(image_set, transform), collate_encoded

        def finish(payloads, got, failed):
            return decode_on_device(payloads, got, failed, image_set, transform, prep, device)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=plan, num_workers=workers, collate_fn=collate_fn, pin_memory=pin, **extra,
    )
    stats = stats or LoaderStats()
    parts: list[torch.Tensor] = []
    indices: list[int] = []
    bad: list[tuple[int, str]] = []
    it = iter(loader)
    try:
        for shard, _, end_batch, last in plan.steps():
            t0 = time.perf_counter()
            images, got, failed = next(it)
            stats.wait_s += time.perf_counter() - t0
            if finish is not None:
                images, got, failed = finish(images, got, failed)
            if images is not None:
                parts.append(images.to(device, non_blocking=pin))
            indices += got
            bad += failed
            if end_batch:
                joined = None if not parts else parts[0] if len(parts) == 1 else torch.cat(parts)
                if stats.first_batch_s is None:
                    stats.first_batch_s = time.perf_counter() - stats.started
                stats.images += len(indices) + len(bad)
                yield ModelBatch(shard, joined, indices, bad, last)
                parts, indices, bad = [], [], []
    finally:
        del it  # shuts the workers down
