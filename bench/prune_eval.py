"""Masked evaluation of many head sets vs the naive way, side by side in one run.

Random-init ViT-B-16 on synthetic images; 10 conditions (original, high, low, 3 random, 4 concept) whose
head sets lie in the last 4 layers, built by ``ccs_dist.ccs.head_sets.build_head_sets`` from a synthetic ``ccs`` table.

* naive: for each condition, zero the out-projection input columns of its heads and run a full forward;
* ours: ``ccs_dist.encode_image_head_sets`` on all conditions at once (the first 8 layers run once).

Prints the time ratio ours / naive (target <= 0.45), the max abs difference of the embeddings, images/s per
condition for both; the last line is JSON.

    python bench/prune_eval.py [--batch 8] [--repeats 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np
import polars as pl
import torch

import ccs_dist
from ccs_dist.ccs.head_sets import HeadSetConfig, build_head_sets, encode_image_head_sets_naive
from timing import timed  # bench/timing.py (this folder is on sys.path when a bench runs)

LABELS = ["geographic locations", "animals", "colors", "objects", "textures", "numbers", "people", "art styles"]


def synthetic_ccs(model_key: str, layers: range, num_heads: int, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for layer in layers:
        for head in range(num_heads):
            score = int(rng.choice([0, 1, 2, 3, 4, 5], p=[0.05, 0.1, 0.1, 0.25, 0.3, 0.2]))
            cat = "high" if score == 5 else "moderate" if score == 3 else "low" if score <= 1 else "other"
            rows.append({"model": model_key, "layer": layer, "head": head, "label": LABELS[rng.integers(len(LABELS))],
                         "ccs": score, "category": cat})
    return pl.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="ViT-B-16")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)

    loaded = ccs_dist.load_model(args.arch, None, device=args.device, precision="fp32")
    L, H = loaded.num_layers, loaded.num_heads
    table = synthetic_ccs(loaded.key, range(L - 4, L), H)
    config = HeadSetConfig(conditions=("original", "high", "low", "random", "concept"), seeds=(0, 1, 2),
                           concepts=("location", "animal", "colour", "object"))
    sets = build_head_sets(table, loaded.key, L, H, config)
    names = [s.condition + ("" if s.seed is None else f"[{s.seed}]") for s in sets]
    head_sets = [list(s.heads) for s in sets]
    assert len(sets) == 10, names
    size = loaded.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    images = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(loaded.device)

    with torch.no_grad():
        ccs_dist.encode_image_head_sets(loaded, images[:1], head_sets[:2])  # warm-up
        t_naive, naive = timed(lambda: encode_image_head_sets_naive(loaded, images, head_sets), args.repeats, loaded.device)
        t_ours, ours = timed(lambda: ccs_dist.encode_image_head_sets(loaded, images, head_sets), args.repeats, loaded.device)
    diff = float((naive.float() - ours.float()).abs().max())
    effect = float((naive[1].float() - naive[0].float()).abs().max())  # high vs original: pruning must matter
    ratio = t_ours / t_naive
    n_img = args.batch * len(sets)
    print(f"{loaded.key} on {loaded.device}: {len(sets)} conditions x {args.batch} images (last-4-layer head sets)")
    for name, s in zip(names, sets):
        print(f"  {name:<20} {s.n_pruned:>2} heads  {', '.join(s.heads[:6])}{' ...' if s.n_pruned > 6 else ''}")
    print(f"naive (one full forward per condition): {t_naive:.2f} s  ({n_img / t_naive:.1f} images/s per condition-image)")
    print(f"ours  (shared prefix, one batched pass): {t_ours:.2f} s  ({n_img / t_ours:.1f} images/s per condition-image)")
    print(f"ratio ours/naive = {ratio:.3f} (target <= 0.45); max abs diff = {diff:.2e} "
          f"(high vs original differ by up to {effect:.2e})")
    print(json.dumps({"bench": "prune_eval", "model": loaded.key, "device": str(loaded.device), "batch": args.batch,
                      "conditions": len(sets), "naive_s": round(t_naive, 4), "ours_s": round(t_ours, 4),
                      "ratio": round(ratio, 4), "target": 0.45, "max_abs_diff": diff, "pruning_effect": effect,
                      "naive_images_per_s": round(n_img / t_naive, 2), "ours_images_per_s": round(n_img / t_ours, 2)}))


if __name__ == "__main__":
    main()
