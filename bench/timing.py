"""Best-of-N wall time of a call, with CUDA synchronised around it (shared by the benchmarks)."""

from __future__ import annotations

import time

import torch


def timed(fn, repeats: int, device: torch.device):
    """-> (best seconds over ``repeats`` calls, the last call's result)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best, out
