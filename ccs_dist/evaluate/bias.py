"""Social bias of occupation retrieval: FairFace and SocialCounterfactuals image sets, MaxSkew@k and NDKL@k.

Each of the 104 occupations is a query: the mean of its prompt-template embeddings (unpruned text tower),
renormalised. Images are ranked by cosine similarity under each head set; MaxSkew@k and NDKL@k are computed
per query and per attribute (race, gender, ...), and reported summed over queries (as the paper) and averaged.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ccs_dist.core.errors import UserError
from ccs_dist.evaluate.biasmetrics import max_skew_at_k, ndkl_at_k
from ccs_dist.data.datasets import ImageListDataset
from ccs_dist.evaluate.encode import HeadSetEncoder, embed_images, prompt_ensemble

log = logging.getLogger(__name__)

DEFAULT_OCCUPATIONS = Path(__file__).parents[1] / "data" / "files" / "occupations_104.txt"  # the paper's 104 occupations
FAIRFACE_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")
FAIRFACE_RACE_MERGE = {"East Asian": "East/Southeast Asian", "Southeast Asian": "East/Southeast Asian"}
FAIRFACE_GENDERS = ("Male", "Female")
LAYOUTS = {
    "fairface": "DATA/fairface/fairface_label_val.csv (columns file,age,gender,race,...; file like val/1.jpg) with the "
    "images under DATA/fairface/ (or DATA/fairface/fairface-img-margin025-trainval/)",
    "socialcounterfactuals": "DATA/socialcounterfactuals/metadata.csv (columns file_name,a1_type,a1,a2_type,a2,...) with "
    "the images at DATA/socialcounterfactuals/<file_name>",
}


@dataclass(frozen=True)
class Attribute:
    """Group labels of one attribute: ``groups_N[i]`` indexes ``names``; -1 means not labelled for it."""

    name: str
    names: tuple[str, ...]
    groups_N: np.ndarray


@dataclass(frozen=True)
class BiasTask:
    name: str
    paths: tuple[Path, ...]
    attributes: tuple[Attribute, ...]
    captions: tuple[str, ...] | None = None  # per image (SocialCounterfactuals): names the occupation shown


BIAS_RANKINGS = ("global", "per_occupation")


def occupation_masks(task: BiasTask, occupations: Sequence[str]) -> np.ndarray:
    """[Q, N] bool: image n shows occupation q (the occupation is a whole word of its caption)."""
    if task.captions is None:
        raise UserError(f"{task.name}: per-occupation ranking needs each image's occupation (a caption column); "
                        "use bias ranking global")
    words = [set(re.findall(r"[a-z]+", c.lower())) for c in task.captions]
    return np.array([[all(w in ws for w in occ.lower().split()) for ws in words] for occ in occupations], dtype=bool)


def _layout_error(task: str, root: Path, detail: str) -> UserError:
    return UserError(f"{task}: {detail} under {root}; expected layout {LAYOUTS[task]}")


def _attribute(task: str, name: str, values: Sequence[str | None], order: Sequence[str] | None = None) -> Attribute | None:
    present = sorted({v for v in values if v is not None})
    names = tuple(n for n in order if n in present) if order else tuple(present)
    if order:
        empty = [n for n in dict.fromkeys(order) if n not in present]
        if empty:
            log.warning("%s/%s: groups without images (they can never appear in a top-k): %s", task, name, ", ".join(empty))
    if not names:
        log.warning("%s: no image is labelled for %s; skipping that attribute", task, name)
        return None
    if len(names) < 2:
        raise UserError(f"{task}: attribute {name} has a single group ({names[0]}); skew needs at least two groups")
    index = {n: i for i, n in enumerate(names)}
    return Attribute(name, names, np.array([index[v] if v is not None else -1 for v in values], dtype=np.int64))


def load_fairface(root: Path | str, split: str = "val") -> BiasTask:
    """FairFace: race (East and Southeast Asian merged: 6 groups) and gender of each face image."""
    base = Path(root) / "fairface"
    csv_path = base / f"fairface_label_{split}.csv"
    if not csv_path.is_file():
        raise _layout_error("fairface", Path(root), f"no fairface/{csv_path.name}")
    image_bases = [base, base / "fairface-img-margin025-trainval", base / "fairface-img-margin125-trainval"]
    paths, races, genders = [], [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not {"file", "race", "gender"} <= set(reader.fieldnames or ()):
            raise _layout_error("fairface", Path(root), f"{csv_path.name} lacks columns file,race,gender")
        for line, row in enumerate(reader, start=2):
            race, gender = (row["race"] or "").strip(), (row["gender"] or "").strip()
            if race not in FAIRFACE_RACES:
                raise UserError(f"fairface: {csv_path.name} line {line}: race {race!r} is not one of {', '.join(FAIRFACE_RACES)}")
            if gender not in FAIRFACE_GENDERS:
                raise UserError(f"fairface: {csv_path.name} line {line}: gender {gender!r} is not Male or Female")
            rel = (row["file"] or "").strip()
            path = next((b / rel for b in image_bases if (b / rel).is_file()), None)
            if path is None:
                raise _layout_error("fairface", Path(root), f"image {rel!r} (line {line}) not found")
            paths.append(path)
            races.append(FAIRFACE_RACE_MERGE.get(race, race))
            genders.append(gender)
    if not paths:
        raise _layout_error("fairface", Path(root), f"{csv_path.name} has no rows")
    race_order = tuple(dict.fromkeys(FAIRFACE_RACE_MERGE.get(r, r) for r in FAIRFACE_RACES))
    attrs = [_attribute("fairface", "race", races, race_order), _attribute("fairface", "gender", genders, FAIRFACE_GENDERS)]
    return BiasTask("fairface", tuple(paths), tuple(a for a in attrs if a is not None))


def load_socialcounterfactuals(root: Path | str, attributes: Sequence[str] = ("race", "gender")) -> BiasTask:
    """SocialCounterfactuals: each image's value of each attribute type (a1/a2 columns of metadata.csv)."""
    base = Path(root) / "socialcounterfactuals"
    csv_path = base / "metadata.csv"
    if not csv_path.is_file():
        raise _layout_error("socialcounterfactuals", Path(root), "no socialcounterfactuals/metadata.csv")
    paths: list[Path] = []
    captions: list[str] = []
    values: dict[str, list[str | None]] = {a: [] for a in attributes}
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"file_name", "a1_type", "a1", "a2_type", "a2"}
        if not need <= set(reader.fieldnames or ()):
            raise _layout_error("socialcounterfactuals", Path(root), "metadata.csv lacks columns " + ",".join(sorted(need)))
        for line, row in enumerate(reader, start=2):
            path = base / (row["file_name"] or "").strip()
            if not path.is_file():
                raise _layout_error("socialcounterfactuals", Path(root), f"image {row['file_name']!r} (line {line}) not found")
            labels = {}
            for slot in ("a1", "a2"):
                kind, value = (row[f"{slot}_type"] or "").strip(), (row[slot] or "").strip()
                if kind:
                    if not value:
                        raise UserError(f"socialcounterfactuals: metadata.csv line {line}: empty {slot} for type {kind}")
                    labels[kind] = value
            paths.append(path)
            captions.append((row.get("caption") or "").strip())
            for a in attributes:
                values[a].append(labels.get(a))
    if not paths:
        raise _layout_error("socialcounterfactuals", Path(root), "metadata.csv has no rows")
    attrs = [_attribute("socialcounterfactuals", a, values[a]) for a in attributes]
    attrs = [a for a in attrs if a is not None]
    if not attrs:
        raise UserError(f"socialcounterfactuals: no image is labelled for any of {', '.join(attributes)}")
    return BiasTask("socialcounterfactuals", tuple(paths), tuple(attrs), tuple(captions) if any(captions) else None)


BIAS_LOADERS: dict[str, Callable[[Path], BiasTask]] = {
    "fairface": load_fairface,
    "socialcounterfactuals": load_socialcounterfactuals,
}


def _per_occupation(scores_QN: np.ndarray, attr: Attribute, member_QN: np.ndarray, n_groups: int, k: int,
                    task: str) -> tuple[np.ndarray, np.ndarray]:
    """MaxSkew@k and NDKL@k of each occupation over its own images (those with >= k of them)."""
    skew, ndkl = [], []
    for q in range(scores_QN.shape[0]):
        mine = member_QN[q]
        if mine.sum() < k:
            continue
        sc, groups = scores_QN[q : q + 1, mine], attr.groups_N[mine]
        skew.append(max_skew_at_k(sc, groups, n_groups, k)[0])
        ndkl.append(ndkl_at_k(sc, groups, n_groups, k)[0])
    if not skew:
        raise UserError(f"{task}/{attr.name}: no occupation has {k} images of its own: lower k or use bias ranking global")
    return np.array(skew), np.array(ndkl)


def read_occupations(path: Path | str | None) -> tuple[str, ...]:
    p = Path(path) if path is not None else DEFAULT_OCCUPATIONS
    if not p.is_file():
        raise UserError(f"occupation list {p} not found: give a file with one occupation a line "
                        "(--occupations FILE, or evaluation.occupations in a job spec), or leave it out for the paper's 104")
    names = tuple(dict.fromkeys(line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()))
    if not names:
        raise UserError(f"occupation list {p} is empty")
    return names


def evaluate_bias(
    loaded,
    task: BiasTask,
    head_sets: Sequence[Sequence[str]],
    transform: Callable,
    occupations: Sequence[str],
    templates: Sequence[str],
    k: int = 10,
    batch_size: int = 64,
    num_workers: int = 0,
    encoder: HeadSetEncoder | None = None,
    ablation: str = "zero",
    ranking: str = "global",
) -> list[dict[str, dict[str, float]]]:
    """Per head set: ``{f"{task}_{attribute}": {maxskew@k_sum, maxskew@k_mean, ndkl@k_sum, ndkl@k_mean, n}}``.

    ranking: ``global`` (every occupation ranks the whole image pool against its group shares) or
    ``per_occupation`` (the paper's code for SocialCounterfactuals: each occupation ranks only its own
    counterfactual images, against their group shares; occupations with fewer than k such images are left
    out and ``n_occupations`` counts those used). Tasks without per-image occupations always rank globally.
    """
    if ranking not in BIAS_RANKINGS:
        raise UserError(f"bias ranking must be one of {', '.join(BIAS_RANKINGS)}, got {ranking!r}")
    per_occupation = ranking == "per_occupation" and task.captions is not None
    masks_QN = occupation_masks(task, occupations) if per_occupation else None
    queries_QE = prompt_ensemble(loaded, occupations, templates)
    ds = ImageListDataset(task.paths, list(range(len(task.paths))), transform)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=num_workers)
    scores = []  # per batch: [S, Q, B]
    for images, _ in tqdm(loader, desc=f"bias {task.name}", leave=False, disable=None):
        emb_SBE = embed_images(loaded, images, head_sets, encoder, ablation)
        scores.append((queries_QE[None] @ emb_SBE.transpose(1, 2)).cpu())
    scores_SQN = torch.cat(scores, dim=-1).numpy()
    results: list[dict[str, dict[str, float]]] = []
    for s in range(len(head_sets)):
        per_attr = {}
        for attr in task.attributes:
            keep = attr.groups_N >= 0
            n = int(keep.sum())
            if n < k:
                raise UserError(f"{task.name}/{attr.name}: {n} labelled images, fewer than k={k}")
            if masks_QN is not None:
                skew, ndkl = _per_occupation(scores_SQN[s], attr, keep & masks_QN, len(attr.names), k, task.name)
            else:
                sc, groups = scores_SQN[s][:, keep], attr.groups_N[keep]
                skew = max_skew_at_k(sc, groups, len(attr.names), k)
                ndkl = ndkl_at_k(sc, groups, len(attr.names), k)
            per_attr[f"{task.name}_{attr.name}"] = {
                f"maxskew@{k}_sum": float(skew.sum()),
                f"maxskew@{k}_mean": float(skew.mean()),
                f"ndkl@{k}_sum": float(ndkl.sum()),
                f"ndkl@{k}_mean": float(ndkl.mean()),
                "n": float(n),
                **({"n_occupations": float(len(skew))} if masks_QN is not None else {}),
            }
        results.append(per_attr)
    return results
