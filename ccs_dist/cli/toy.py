"""``train-toy``: train ccs-toy, the planted-concept CLIP of the demo."""

from __future__ import annotations

from ccs_dist.core.errors import UserError
from ccs_dist.toy.train import TrainConfig, train_to_file


def train_toy(self, out: str = "ccs-toy.safetensors", steps: int = 1000, seed: int = 0, batch_size: int = 256,
              threads: int = 2, null_steps: int = 150):
    """Train ccs-toy (the planted-concept CLIP of the demo) on the toy world; write its weights and print their sha256.

    Its defaults write the bundled weights (load_model("ccs-toy", "planted_v2")) bit for bit: about 8 minutes on 2 quiet
    CPU cores, longer on a loaded machine. The same seed, steps and threads give the same file.

    Args:
        out: the safetensors file to write (load it with --model ccs-toy --pretrained OUT).
        steps: optimiser steps (batches) of phase 1: both towers on toy images and captions.
        null_steps: steps of phase 2: the text tower alone learns that text from outside the toy world
            (words of the default pool no toy caption uses) fits no toy image and tells none from another.
        seed: seed of the initialisation and of every training image and caption.
        batch_size: images per batch (a multiple of 4: batches are groups of 4 images that differ in one factor).
        threads: torch CPU threads (the result depends on it at float rounding level).
    """
    from pathlib import Path


    for name, value, low in (("steps", steps, 1), ("seed", seed, 0), ("batch_size", batch_size, 4), ("threads", threads, 1),
                             ("null_steps", null_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{name}={value!r}: give an integer >= {low}")
    if batch_size % 4:
        raise UserError(f"batch_size={batch_size}: give a multiple of 4 (batches are groups of 4 images)")
    config = TrainConfig(steps=steps, seed=seed, batch_size=batch_size, threads=threads, null_steps=null_steps)
    path, digest, last_loss = train_to_file(config, Path(out))
    return f"wrote {path} (sha256 {digest}), final loss {last_loss:.4f}"
