"""``train-toy``: train ccs-toy (the planted-concept CLIP of the demo) or ccs-plant (world v3 of the benchmark)."""

from __future__ import annotations

from pathlib import Path

from ccs_dist.core.errors import UserError
from ccs_dist.toy.plant_train import PlantConfig, train_plant_to_file
from ccs_dist.toy.train import TrainConfig, train_to_file

WORLDS = ("toy", "plant")


def train_toy(self, out: str = "ccs-toy.safetensors", steps: int | None = None, seed: int = 0, batch_size: int | None = None,
              threads: int = 2, null_steps: int = 150, world: str = "toy", control: bool = False):
    """Train ccs-toy (the planted-concept CLIP of the demo) on the toy world; write its weights and print their sha256.

    Its defaults write the bundled weights (load_model("ccs-toy", "planted_v2")) bit for bit: about 8 minutes on 2 quiet
    CPU cores, longer on a loaded machine. The same seed, steps and threads give the same file. With --world plant it
    trains ccs-plant on world v3 (image-side planting only, fp16 weights): --seed S writes ccs-plant/plant_sS bit for
    bit, --control the contrastive-only ccs-plant/contrastive_sS (see docs/planted-world.md).

    Args:
        out: the safetensors file to write (load it with --model ccs-toy --pretrained OUT, or --model ccs-plant).
        steps: optimiser steps (batches); default 1000 (toy phase 1) or 600 (plant).
        null_steps: toy only: steps of phase 2, where the text tower alone learns that text from outside the toy
            world (words of the default pool no toy caption uses) fits no toy image and tells none from another.
        seed: seed of the initialisation and of every training image and caption.
        batch_size: images per batch (a multiple of 4: groups of 4 images that differ in one factor); default 256 (toy)
            or 128 (plant).
        threads: torch CPU threads (the result depends on it at float rounding level).
        world: toy (ccs-toy, the demo's model) or plant (ccs-plant, world v3 of the planted benchmark).
        control: plant only: train without the planting loss (the contrastive-only control).
    """
    if world not in WORLDS:
        raise UserError(f"world={world!r}: give one of {', '.join(WORLDS)}")
    steps = (1000 if world == "toy" else 600) if steps is None else steps
    batch_size = (256 if world == "toy" else 128) if batch_size is None else batch_size

    for name, value, low in (("steps", steps, 1), ("seed", seed, 0), ("batch_size", batch_size, 4), ("threads", threads, 1),
                             ("null_steps", null_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{name}={value!r}: give an integer >= {low}")
    if batch_size % 4:
        raise UserError(f"batch_size={batch_size}: give a multiple of 4 (batches are groups of 4 images)")
    if Path(out).suffix != ".safetensors":
        raise UserError(f"--out {out}: give a .safetensors file name")
    if world == "plant":
        config = PlantConfig(steps=steps, seed=seed, batch_size=batch_size, threads=threads, plant=not control)
        path, digest, last_loss, seconds = train_plant_to_file(config, Path(out))
        return f"wrote {path} (sha256 {digest}), final loss {last_loss:.4f}, {seconds:.0f} s"
    if control:
        raise UserError("--control is for --world plant (ccs-toy has no contrastive-only control)")

    config = TrainConfig(steps=steps, seed=seed, batch_size=batch_size, threads=threads, null_steps=null_steps)
    path, digest, last_loss = train_to_file(config, Path(out))
    return f"wrote {path} (sha256 {digest}), final loss {last_loss:.4f}"
