"""Shard outputs written off the critical path: reusable host buffers and one writer thread.

Each shard's outputs are copied batch by batch into a host buffer (pinned on CUDA, so the device-to-host
copies do not block the next batch); when the shard is complete the buffer goes to the writer thread,
which waits for the copies, writes the files atomically and hands the buffer back. Two buffers: the model
fills one while the other is written, and waits (bounded memory) only when the disk falls behind.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import copy
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ccs_dist.artifacts.store import atomic_save_npy, atomic_write_bytes, atomic_write_json


@dataclass
class ShardBuffer:
    """Host arrays for one shard's outputs; ``parts`` maps a file prefix (heads, rest, embedding) to [S, ...]."""

    parts: dict[str, torch.Tensor]
    filled: int = 0
    ids: list[str] = field(default_factory=list)

    @classmethod
    def allocate(cls, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]], pin: bool) -> ShardBuffer:
        return cls({name: torch.empty(shape, dtype=dtype, pin_memory=pin) for name, (shape, dtype) in shapes.items()})

    def add(self, outputs: dict[str, torch.Tensor], ids: list[str]) -> None:
        """Copy a batch's outputs (any device) behind the ones already held; non-blocking from CUDA."""
        n = len(ids)
        for name, value in outputs.items():
            dst = self.parts[name][self.filled : self.filled + n]
            dst.copy_(value.to(dst.dtype), non_blocking=value.device.type == "cuda")
        self.filled += n
        self.ids += ids


class ShardWriter:
    """One writer thread; ``submit`` hands it a full buffer, ``take`` gives an empty one (waiting if none is free)."""

    def __init__(self, shapes: dict[str, tuple[tuple[int, ...], torch.dtype]], device: torch.device, n_buffers: int = 2):
        self.device = device
        self._free: queue.Queue[ShardBuffer] = queue.Queue()
        for _ in range(n_buffers):
            self._free.put(ShardBuffer.allocate(shapes, pin=device.type == "cuda"))
        self._jobs: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="shard-writer", daemon=True)
        self._thread.start()

    def take(self) -> ShardBuffer:
        self._raise_if_failed()
        while True:
            try:
                buffer = self._free.get(timeout=0.5)
                break
            except queue.Empty:
                self._raise_if_failed()
        buffer.filled, buffer.ids = 0, []
        return buffer

    def submit(self, buffer: ShardBuffer, folder: Path, name: str, progress_path: Path, progress: dict) -> None:
        """Write ``buffer`` as shard ``name`` (skipped when empty), then ``progress`` (a snapshot is taken now)."""
        self._raise_if_failed()
        done = None
        if self.device.type == "cuda":
            done = torch.cuda.Event()
            done.record()
        self._jobs.put((buffer, folder, name, progress_path, copy.deepcopy(progress), done))

    def close(self) -> None:
        """Wait until everything submitted is written; re-raise the writer's error if it failed."""
        self._jobs.put(None)
        self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            buffer, folder, name, progress_path, progress, done = job
            try:
                if self._error is None:
                    if done is not None:
                        done.synchronize()
                    if buffer.filled:
                        for part, array in buffer.parts.items():
                            atomic_save_npy(folder / f"{part}-{name}.npy", array[: buffer.filled].numpy())
                        atomic_write_bytes(folder / f"ids-{name}.txt", ("\n".join(buffer.ids) + "\n").encode("utf-8"))
                    atomic_write_json(progress_path, progress)
            except BaseException as e:  # surfaced in the main thread at its next take/submit/close
                self._error = e
            finally:
                self._free.put(buffer)


def shard_shapes(shard_size: int, n_layers: int, n_heads: int, dim: int, keep: str,
                 n_pool: int = 0) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The per-shard host arrays for a keep mode: heads (fp32 or fp16) and the attention pooling's ``n_pool`` units
    (SigLIP) unless only moments are kept."""
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    if keep != "moments":
        dtype = torch.float16 if keep == "heads_fp16" else torch.float32
        shapes["heads"] = ((shard_size, n_layers, n_heads, dim), dtype)
        if n_pool:
            shapes["pool"] = ((shard_size, n_pool, dim), dtype)
    shapes["rest"] = ((shard_size, dim), torch.float32)
    shapes["embedding"] = ((shard_size, dim), torch.float32)
    return shapes
