"""Classification tasks as the paper's code defines them: the CIFAR-10 object / animal subsets of its concept
experiment, and its class names (``class_names="paper"``).

Facts of the reference code (avinashsai/CCS-CLIP), restated:

- ``cifar10animals`` = CIFAR-10 test images of bird, cat, deer, dog, frog, horse; ``cifar10objects`` = those of
  airplane, automobile, ship, truck; labels renumbered within the subset; the CIFAR-10 templates.
- CIFAR-100 and Food-101 class names are joined by underscores (``aquarium_fish``, ``apple_pie``).
- Oxford-IIIT Pets classes are the first word of each breed's file prefix (``american``, ``english``,
  ``Abyssinian``, ...), so breeds sharing it merge: 37 breeds become 35 classes.
"""

from __future__ import annotations

from dataclasses import replace

from torch.utils.data import Dataset

from ccs_dist.core.errors import UserError
from ccs_dist.data import metadata

CIFAR10_SUBSETS = {
    "cifar10animals": ("bird", "cat", "deer", "dog", "frog", "horse"),
    "cifar10objects": ("airplane", "automobile", "ship", "truck"),
}
CLASS_NAMES = ("standard", "paper")


class RelabelledDataset(Dataset):
    """``base`` restricted to ``indices``, each label mapped through ``label_map`` (old label -> new label)."""

    def __init__(self, base: Dataset, indices: list[int], label_map: dict[int, int]):
        self.base, self.indices, self.label_map = base, indices, label_map

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, label = self.base[self.indices[i]]
        return image, self.label_map[int(label)]


def _labels(dataset) -> list[int]:
    for attr in ("targets", "_labels"):  # torchvision's CIFAR / Oxford Pets keep labels without decoding images
        if hasattr(dataset, attr):
            return [int(x) for x in getattr(dataset, attr)]
    return [int(dataset[i][1]) for i in range(len(dataset))]


def cifar10_subset(task, name: str):
    """The ``cifar10animals`` / ``cifar10objects`` task from a loaded ``cifar10`` task."""
    keep = CIFAR10_SUBSETS[name]
    old = {c: i for i, c in enumerate(task.classnames)}
    missing = [c for c in keep if c not in old]
    if missing:
        raise UserError(f"{name}: the CIFAR-10 class names lack {', '.join(missing)}")
    label_map = {old[c]: j for j, c in enumerate(keep)}
    indices = [i for i, label in enumerate(_labels(task.dataset)) if label in label_map]
    if not indices:
        raise UserError(f"{name}: no CIFAR-10 test image of {', '.join(keep)} under the data root")
    return replace(task, name=name, dataset=RelabelledDataset(task.dataset, indices, label_map), classnames=keep)


def with_class_names(task, class_names: str):
    """``task`` with the paper's class names under ``class_names="paper"`` (unchanged for other tasks)."""
    if class_names not in CLASS_NAMES:
        raise UserError(f"unknown class_names {class_names!r}: use standard or paper")
    if class_names == "standard":
        return task
    if task.name in ("cifar100", "food101"):
        return replace(task, classnames=tuple("_".join(c.split()) for c in task.classnames))
    if task.name == "oxford_pets":
        first_words = [prefix.split("_")[0] for prefix, _, _ in metadata.oxford_pets_breeds()]
        merged = list(dict.fromkeys(first_words))
        label_map = {i: merged.index(w) for i, w in enumerate(first_words)}
        dataset = RelabelledDataset(task.dataset, list(range(len(task.dataset))), label_map)
        return replace(task, dataset=dataset, classnames=tuple(merged))
    return task
