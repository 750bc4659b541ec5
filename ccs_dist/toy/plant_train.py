"""Train ``ccs-plant`` on world v3: the contrastive loss of :mod:`ccs_dist.toy.train` plus image-side planting.

One phase, both towers, on world-v3 images and their template captions only: no description-pool text, no
null captions, no text-side head loss. With ``plant=True`` the heads of :data:`ccs_dist.toy.plan.PLAN` also
get :func:`ccs_dist.toy.plant_loss.plant_loss` (read-outs against the scene labels, invariance, mixture
shares, hash and noise terms); with ``plant=False`` the same architecture and seed train on the contrastive
loss alone (the controls). Deterministic on CPU in ``seed`` for a given thread count (as ``train.train``);
weights are written in fp16 (:func:`save_fp16`), and ``ccs-dist train-toy --world plant`` writes each bundled
file bit for bit.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ccs_dist.artifacts.store import atomic_write_bytes, safetensors_bytes
from ccs_dist.data.planted import world
from ccs_dist.data.toy.world import consistency  # world-agnostic: caption values vs image values
from ccs_dist.toy.plan import ARCH, PLAN
from ccs_dist.toy.plant_loss import ReadOuts, plant_loss
from ccs_dist.toy.planted import capture_head_terms
from ccs_dist.toy.train import TrainResult, _adamw, _cosine_lr, _image_tensor, _Tokens, build_model, multi_positive_clip_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlantConfig:
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 30
    weight_decay: float = 0.05
    mention_p: float = 0.4
    plant: bool = True  # False: the contrastive-only control
    plant_weight: float = 1.0
    seed: int = 0
    threads: int = 2
    arch: str = ARCH


@dataclass(frozen=True)
class PlantBatch:
    images: torch.Tensor  # [B, 3, S, S]
    captions: list[str]
    positives: torch.Tensor  # [B captions, B images] bool
    values_BF: torch.Tensor
    varied_B: torch.Tensor


def make_batch(rng: np.random.Generator, config: PlantConfig) -> PlantBatch:
    scenes, varied_B = world.sample_contrast_groups(rng, config.batch_size // world.CARDINALITY)
    always_BF = np.eye(len(world.FACTOR_NAMES), dtype=bool)[varied_B]
    mention_BF = world.sample_mentions(rng, len(scenes), always_BF, config.mention_p)
    positives = consistency(scenes.values_NF, mention_BF, scenes.values_NF)
    return PlantBatch(_image_tensor(world.render(scenes, rng)), world.captions_for(scenes, mention_BF),
                      torch.from_numpy(positives), torch.from_numpy(scenes.values_NF), torch.from_numpy(varied_B))


def train_plant(config: PlantConfig, log_every: int = 50, on_log: Callable[[int, float, float], None] | None = None) -> TrainResult:
    """Train from scratch; returns the fp32 state dict (read-outs excluded) and every step's loss."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        model, tokenizer = build_model(config.arch, config.seed)
        torch.manual_seed(config.seed + 7919)  # the read-outs' own init, after the model's
        readouts = ReadOuts(model.visual.output_dim)
        model.train()
        tokens = _Tokens(tokenizer)
        optimizer = _adamw(torch.nn.ModuleList([model, readouts]), config.lr, config.weight_decay)
        rng = np.random.default_rng([config.seed, 3])
        layers = tuple(sorted({h.layer for h in PLAN})) if config.plant else ()
        losses: list[float] = []
        start = time.perf_counter()
        for step in range(config.steps):
            for group in optimizer.param_groups:
                group["lr"] = _cosine_lr(step, config.steps, config.warmup, config.lr)
            batch = make_batch(rng, config)
            with capture_head_terms(model.visual, layers) as head_terms:
                raw_BE = model.encode_image(batch.images)
                terms = head_terms() if config.plant else {}
            image_BE = F.normalize(raw_BE, dim=-1)
            text_TE = F.normalize(model.encode_text(tokens(batch.captions)), dim=-1)
            loss = multi_positive_clip_loss(model.logit_scale.exp() * text_TE @ image_BE.T, batch.positives)
            if config.plant:
                loss = loss + config.plant_weight * plant_loss(terms, raw_BE, batch.values_BF, batch.varied_B, readouts)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            if on_log and (step % log_every == 0 or step == config.steps - 1):
                on_log(step, float(np.mean(losses[-log_every:])), time.perf_counter() - start)
        model.eval()
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        return TrainResult(state, losses, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def save_fp16(state_dict: dict[str, torch.Tensor], path: Path, arch: str = ARCH) -> str:
    """Write the state dict as fp16 safetensors atomically (loading widens it to fp32); returns its sha256."""
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state_dict.items()}
    data = safetensors_bytes(half, metadata={"arch": arch, "dtype": "float16"})
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def train_plant_to_file(config: PlantConfig, path: Path) -> tuple[Path, str, float, float]:
    """Train and write the fp16 weights. Returns (path, sha256, mean loss of the last 25 steps, seconds)."""
    def report(step: int, loss: float, seconds: float) -> None:
        log.info("step %d/%d: loss %.4f (%.0f s)", step + 1, config.steps, loss, seconds)

    result = train_plant(config, on_log=report)
    digest = save_fp16(result.state_dict, Path(path))
    return Path(path), digest, float(np.mean(result.losses[-25:])), result.seconds
