"""Ground truth 1 for ``ccs-plant``: eta^2 of every factor (hidden ones too) on every head's direct contribution,
measured on held-out world-v3 images straight from a model in memory, and whether each planted head measures
as planted against the random-init baseline of the same head.

A head *measures as planted* when (mono) its planted factor's eta^2 is its largest and exceeds the random-init
head's eta^2 of that factor by :data:`MARGIN`; (mixture) both factors' eta^2 exceed their random-init
values by the margin; (hash) the hash's eta^2 exceeds random init's by the margin while neither hashed factor's
does; (noise) no factor's eta^2 exceeds random init's by the margin. Free heads are not counted.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from ccs_dist.data.planted import world
from ccs_dist.toy.ground_truth import variance_share
from ccs_dist.toy.plan import PLAN, PlantedHead
from ccs_dist.toy.planted import capture_head_terms
from ccs_dist.toy.train import _image_tensor

MARGIN = 0.2
HELD_OUT = (4_000_037,)


def held_out_scenes(n: int, seed: int = 0) -> tuple[world.Scenes, torch.Tensor]:
    rng = np.random.default_rng([*HELD_OUT, seed])
    scenes = world.sample_scenes(rng, n)
    return scenes, _image_tensor(world.render(scenes, rng))


@torch.no_grad()
def head_contributions(model, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    """[N, L, H, E] direct contributions over the embedding norm (as TextSpan and ground truth see them)."""
    layers = tuple(range(len(model.visual.transformer.resblocks)))
    out = []
    for i in range(0, len(images), batch):
        with capture_head_terms(model.visual, layers) as terms:
            raw_BE = model.encode_image(images[i:i + batch])
            t = terms()
        x = torch.stack([t[l] for l in layers], 1) / raw_BE.norm(dim=-1)[:, None, None, None]
        out.append(x.double().numpy())
    return np.concatenate(out)


def eta2_table(model_name: str, x_NLHE: np.ndarray, scenes: world.Scenes, permute: np.random.Generator | None = None) -> pl.DataFrame:
    """(model, layer, head, factor, eta2) for every factor plus ``hash:a+b`` of each hash head's pair.

    ``permute``: shuffle every label column first (the null: eta^2 of labels unrelated to the images).
    """
    labels = {f: scenes.column(f).copy() for f in world.FACTOR_NAMES}
    for h in PLAN:
        if h.kind == "hash":
            labels[f"hash:{'+'.join(h.factors)}"] = (labels[h.factors[0]] + labels[h.factors[1]]) % world.CARDINALITY
    if permute is not None:
        labels = {k: permute.permutation(v) for k, v in labels.items()}
    rows = [{"model": model_name, "layer": l, "head": h, "factor": f, "eta2": variance_share(x_NLHE[:, l, h], y)}
            for l in range(x_NLHE.shape[1]) for h in range(x_NLHE.shape[2]) for f, y in labels.items()]
    return pl.DataFrame(rows)


def _eta(table: pl.DataFrame, layer: int, head: int) -> dict[str, float]:
    sub = table.filter((pl.col("layer") == layer) & (pl.col("head") == head))
    return dict(zip(sub["factor"].to_list(), sub["eta2"].to_list()))


def measures_as_planted(head: PlantedHead, trained: dict[str, float], baseline: dict[str, float]) -> bool | None:
    """The module docstring's rule for one head; None for a free head."""
    lift = {f: trained[f] - baseline[f] for f in trained}
    if head.kind == "mono":
        f = head.factors[0]
        return bool(lift[f] > MARGIN and max(world.FACTOR_NAMES, key=trained.__getitem__) == f)
    if head.kind == "mixture":
        return bool(all(lift[f] > MARGIN for f in head.factors))
    if head.kind == "hash":
        key = f"hash:{'+'.join(head.factors)}"
        return bool(lift[key] > MARGIN and all(lift[f] <= MARGIN for f in head.factors))
    if head.kind == "noise":
        return bool(all(lift[f] <= MARGIN for f in world.FACTOR_NAMES))
    return None


def planted_summary(trained: pl.DataFrame, baseline: pl.DataFrame, plan: tuple[PlantedHead, ...] = PLAN) -> pl.DataFrame:
    """One row per planted head: kind, factors, the planted factors' eta^2 (trained / random init), planted or not."""
    rows = []
    for h in plan:
        t, b = _eta(trained, h.layer, h.head), _eta(baseline, h.layer, h.head)
        ok = measures_as_planted(h, t, b)
        keys = ([f"hash:{'+'.join(h.factors)}"] if h.kind == "hash" else list(h.factors)) or [max(world.FACTOR_NAMES, key=t.__getitem__)]
        rows.append({"layer": h.layer, "head": h.head, "kind": h.kind, "factors": ",".join(h.factors),
                     "eta2": ", ".join(f"{k}={t[k]:.2f}" for k in keys), "random_init": ", ".join(f"{k}={b[k]:.2f}" for k in keys),
                     "planted": ok})
    return pl.DataFrame(rows)
