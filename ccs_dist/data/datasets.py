"""Zero-shot classification datasets: real loaders for the distributed on-disk layouts.

Every loader takes the *data root* (the folder that holds the dataset's own top folder, as torchvision's
dataset classes expect) and returns a :class:`ClassificationTask`: a dataset of ``(image [3,H,W], label)``
whose labels index the task's class names. torchvision's dataset classes are used where they exist, so
``download=True`` works for users with network access; the other layouts are read directly.

A missing or malformed layout is a :class:`UserError` whose message shows the expected layout.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from ccs_dist.core.errors import UserError
from ccs_dist.data import metadata
from ccs_dist.data.toy.world import FACTOR_NAMES
from ccs_dist.data.paper_tasks import cifar10_subset
from ccs_dist.data.toy.scenes import TASKS
from ccs_dist.data.toy.world import FACTORS, caption
from ccs_dist.data.planted import world as plant_world
from ccs_dist.data.planted.scenes import TASKS as PLANT_TASKS
from ccs_dist.data.synthetic import SYNTHETIC_MARKER

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")

LAYOUTS = {
    "cifar10": "DATA/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (the python pickled batches)",
    "cifar100": "DATA/cifar-100-python/{train, test, meta} (the python pickled batches)",
    "food101": "DATA/food-101/images/<class>/<id>.jpg and DATA/food-101/meta/{classes.txt, test.json, ...}",
    "country211": "DATA/country211/{train,valid,test}/<ISO code>/<id>.jpg",
    "oxford_pets": "DATA/oxford-iiit-pet/images/<Breed>_<n>.jpg and DATA/oxford-iiit-pet/annotations/{trainval,test}.txt",
    "imagenet": "DATA/imagenet/val/<wnid>/<image>.JPEG (ImageNet-1k validation images sorted into WordNet-id folders)",
    "imagenet_a": "DATA/imagenet-a/<wnid>/<image>.jpg (200 WordNet-id folders)",
    "imagenet_r": "DATA/imagenet-r/<wnid>/<image>.jpg (200 WordNet-id folders)",
    "folder": "ROOT/<class folder>/<image> plus ROOT/classnames.txt (one class name per line, in sorted folder order)",
    **{f"toy-{f}": f"DATA/toy-{f}/<class folder>/<image>.png plus DATA/toy-{f}/classnames.txt (written by "
       f"python -m ccs_dist.data.synthetic DATA toy-{f})" for f in FACTOR_NAMES},
    **{f"plant-{f}": f"DATA/plant-{f}/<class folder>/<image>.png plus DATA/plant-{f}/classnames.txt (written by "
       f"python -m ccs_dist.data.synthetic DATA plant-{f})" for f in plant_world.FACTOR_NAMES},
}


@dataclass(frozen=True)
class ClassificationTask:
    """A zero-shot classification task: images with labels in ``0..C-1`` and the C class names.

    ``dataset[i]`` is ``(image, label)``; the image is whatever ``transform`` returns ([3,H,W] tensors
    with a CLIP preprocess).
    """

    name: str
    dataset: Dataset
    classnames: tuple[str, ...]
    templates: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


class ImageListDataset(Dataset):
    """Images from a list of files with integer labels; RGB-converted and transformed on access."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], transform: Callable | None = None):
        if len(paths) != len(labels):
            raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
        self.paths, self.labels, self.transform = list(paths), [int(x) for x in labels], transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        with Image.open(self.paths[i]) as im:
            image = im.convert("RGB")
        return (self.transform(image) if self.transform else image), self.labels[i]


class _Relabelled(Dataset):
    """Wraps a dataset, mapping its labels through ``label_map`` (dataset label -> task label)."""

    def __init__(self, base: Dataset, label_map: Sequence[int]):
        self.base, self.label_map = base, list(label_map)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        image, label = self.base[i]
        return image, self.label_map[label]


def _missing(task: str, root: Path, detail: str = "") -> UserError:
    extra = f" ({detail})" if detail else ""
    return UserError(f"{task}: dataset not found under {root}{extra}; expected layout {LAYOUTS[task]}")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _check_nonempty(task: str, root: Path, n: int) -> None:
    if n == 0:
        raise _missing(task, root, "no images found")


# --- CIFAR ------------------------------------------------------------------------------------------


def _cifar_classes(n_classes: int):
    from torchvision.datasets import CIFAR10, CIFAR100

    base = CIFAR10 if n_classes == 10 else CIFAR100

    class _Unchecked(base):  # type: ignore[valid-type, misc]
        """torchvision's CIFAR reader without the md5 check (for copies that differ from the release)."""

        def _check_integrity(self) -> bool:
            files = self.train_list if self.train else self.test_list
            folder = Path(self.root) / self.base_folder
            return all((folder / name).is_file() for name, _ in files)

        def _load_meta(self) -> None:
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as f:
                data = pickle.load(f, encoding="latin1")
            self.classes = data[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return base, _Unchecked


def load_cifar(n_classes: int, root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    """CIFAR-10/100 test split from the python pickled batches (torchvision's reader)."""
    name = f"cifar{n_classes}"
    base, unchecked = _cifar_classes(n_classes)
    folder = Path(root) / base.base_folder
    try:
        ds = base(str(root), train=False, transform=transform, download=download)
    except RuntimeError:
        if not (folder / base.test_list[0][0]).is_file() or not (folder / base.meta["filename"]).is_file():
            raise _missing(name, Path(root)) from None

        if (folder / SYNTHETIC_MARKER).is_file():  # written by ccs_dist: of course not the release
            log.info("%s: synthetic copy under %s", name, folder)
        else:
            log.warning("%s: files under %s differ from the official release (md5); reading them as they are", name, folder)
        try:
            ds = unchecked(str(root), train=False, transform=transform, download=False)
        except (KeyError, pickle.UnpicklingError, EOFError, ValueError) as e:
            raise _missing(name, Path(root), f"unreadable batch: {e}") from None
    classnames = metadata.cifar_classnames(n_classes)
    if len(ds.classes) != len(classnames):
        raise UserError(f"{name}: the dataset has {len(ds.classes)} classes but there are {len(classnames)} class names")
    _check_nonempty(name, Path(root), len(ds))
    return ClassificationTask(name, ds, classnames, metadata.templates(name))


# --- Food-101, Country211, Oxford-IIIT Pets (torchvision classes) --------------------------------------


def load_food101(root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    from torchvision.datasets import Food101

    try:
        ds = Food101(str(root), split="test", transform=transform, download=download)
    except (RuntimeError, FileNotFoundError) as e:
        raise _missing("food101", Path(root), str(e).split("\n")[0]) from None
    folders, names = metadata.food101_folders(), metadata.food101_classnames()
    if len(ds.classes) != len(names):
        raise UserError(f"food101: meta/test.json lists {len(ds.classes)} classes but there are {len(names)} class names")
    index = {f: i for i, f in enumerate(folders)}
    unknown = [c for c in ds.classes if c not in index]
    if unknown:
        raise UserError(f"food101: unknown classes in meta/test.json: {', '.join(unknown[:5])}")
    _check_nonempty("food101", Path(root), len(ds))
    return ClassificationTask("food101", _Relabelled(ds, [index[c] for c in ds.classes]), names, metadata.templates("food101"))


def load_country211(root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    from torchvision.datasets import Country211

    try:
        ds = Country211(str(root), split="test", transform=transform, download=download)
    except (RuntimeError, FileNotFoundError) as e:
        raise _missing("country211", Path(root), str(e).split("\n")[0]) from None
    codes_names = metadata.country211_codes_and_names()
    index = {code: i for i, (code, _) in enumerate(codes_names)}
    unknown = [c for c in ds.classes if c not in index]
    if unknown:
        raise UserError(f"country211: folders that are not Country211 country codes: {', '.join(unknown[:5])}")
    _check_nonempty("country211", Path(root), len(ds))
    names = tuple(name for _, name in codes_names)
    return ClassificationTask("country211", _Relabelled(ds, [index[c] for c in ds.classes]), names, metadata.templates("country211"))


def load_oxford_pets(root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    from torchvision.datasets import OxfordIIITPet

    try:
        ds = OxfordIIITPet(str(root), split="test", target_types="category", transform=transform, download=download)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        raise _missing("oxford_pets", Path(root), str(e).split("\n")[0]) from None
    breeds = metadata.oxford_pets_breeds()
    # torchvision's labels are the annotation class ids minus one: they index the 37 breeds directly.
    bad = sorted({label for label in ds._labels if not 0 <= label < len(breeds)})
    if bad:
        raise UserError(f"oxford_pets: class ids {[b + 1 for b in bad[:5]]} out of range 1..{len(breeds)} in annotations/test.txt")
    _check_nonempty("oxford_pets", Path(root), len(ds))
    return ClassificationTask("oxford_pets", ds, tuple(name for _, name, _ in breeds), metadata.templates("oxford_pets"))


# --- ImageNet family (WordNet-id folders) ------------------------------------------------------------


def _wnid_folders(task: str, folder: Path, allowed: Sequence[str]) -> tuple[list[Path], list[int]]:
    if not folder.is_dir():
        raise _missing(task, folder.parent)
    index = {w: i for i, w in enumerate(allowed)}
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir())
    if not subdirs:
        raise _missing(task, folder.parent, f"no WordNet-id folders in {folder}")
    unknown = [p.name for p in subdirs if p.name not in index]
    if unknown:
        raise UserError(
            f"{task}: folders that are not among its {len(allowed)} WordNet ids: {', '.join(unknown[:5])}; "
            f"expected layout {LAYOUTS[task]}"
        )
    paths, labels = [], []
    for sub in subdirs:
        for p in _images_in(sub):
            paths.append(p)
            labels.append(index[sub.name])
    _check_nonempty(task, folder.parent, len(paths))
    return paths, labels


def load_imagenet(root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    """ImageNet-1k validation images in WordNet-id folders (any subset of the 1000 folders)."""
    wnids = metadata.imagenet_wnids()
    paths, labels = _wnid_folders("imagenet", Path(root) / "imagenet" / "val", wnids)
    names = metadata.imagenet_classnames()
    return ClassificationTask("imagenet", ImageListDataset(paths, labels, transform), names, metadata.templates("imagenet"))


def _load_imagenet_subset(task: str, folder_name: str, root: Path, transform: Callable | None) -> ClassificationTask:
    wnids = metadata.imagenet_subset_wnids(task)
    by_wnid = metadata.imagenet_names_by_wnid()
    paths, labels = _wnid_folders(task, Path(root) / folder_name, wnids)
    names = tuple(by_wnid[w] for w in wnids)
    return ClassificationTask(task, ImageListDataset(paths, labels, transform), names, metadata.templates(task))


def load_imagenet_a(root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    """ImageNet-A: 200 classes, classifier over those 200 (mapped by WordNet id to ImageNet names)."""
    return _load_imagenet_subset("imagenet_a", "imagenet-a", root, transform)


def load_imagenet_r(root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    """ImageNet-R: 200 classes, classifier over those 200 (mapped by WordNet id to ImageNet names)."""
    return _load_imagenet_subset("imagenet_r", "imagenet-r", root, transform)


# --- any folder with a class-names file ---------------------------------------------------------------

CLASSNAMES_FILE = "classnames.txt"


def load_folder(root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    """ROOT/<class folder>/<images> with ROOT/classnames.txt naming the sorted class folders, one a line."""
    root = Path(root)
    names_file = root / CLASSNAMES_FILE
    if not root.is_dir() or not names_file.is_file():
        raise _missing("folder", root, f"no {CLASSNAMES_FILE}" if root.is_dir() else "")
    names = tuple(line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip())
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if len(subdirs) != len(names):
        raise UserError(
            f"folder {root}: {len(subdirs)} class folders but {len(names)} class names in {CLASSNAMES_FILE}; "
            "give one name per class folder, in sorted folder order"
        )
    paths, labels = [], []
    for i, sub in enumerate(subdirs):
        for p in _images_in(sub):
            paths.append(p)
            labels.append(i)
    _check_nonempty("folder", root, len(paths))
    return ClassificationTask(f"folder:{root.name}", ImageListDataset(paths, labels, transform), names, metadata.templates("folder"))


def _load_world_task(task: str, root: Path, transform: Callable | None, values: tuple[str, ...], prompt: str) -> ClassificationTask:
    folder = Path(root) / task
    if not (folder / CLASSNAMES_FILE).is_file():
        raise _missing(task, folder, "")
    found = load_folder(folder, transform)
    if found.classnames != values:
        raise UserError(f"{folder}: class names {list(found.classnames)} are not the values {list(values)} of {task}; "
                        f"rewrite it with python -m ccs_dist.data.synthetic ROOT {task}")
    return ClassificationTask(task, found.dataset, found.classnames, (prompt,))


def load_toy(task: str, root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    """A held-out ``toy-<factor>`` set: ROOT/toy-<factor>/ in the folder layout, prompts = the toy captions."""
    factor = task.removeprefix("toy-")
    return _load_world_task(task, root, transform, FACTORS[factor], caption({factor: "{c}"}))


def load_plant(task: str, root: Path, transform: Callable | None, download: bool = False) -> ClassificationTask:
    """A held-out ``plant-<factor>`` set (world v3); prompt = its caption, "a {c} background" for the uncaptioned bgtone."""
    factor = task.removeprefix("plant-")
    prompt = plant_world.caption({factor: "{c}"}) if factor in plant_world.CAPTION_FACTORS else "a {c} background"
    return _load_world_task(task, root, transform, plant_world.FACTORS[factor], prompt)


def _toy_loaders() -> dict[str, Callable[..., ClassificationTask]]:
    toy = {task: (lambda root, transform, download=False, task=task: load_toy(task, root, transform, download)) for task in TASKS}
    plant = {task: (lambda root, transform, download=False, task=task: load_plant(task, root, transform, download))
             for task in PLANT_TASKS}
    return {**toy, **plant}


LOADERS: dict[str, Callable[..., ClassificationTask]] = {
    "cifar10": lambda root, transform, download=False: load_cifar(10, root, transform, download),
    "cifar100": lambda root, transform, download=False: load_cifar(100, root, transform, download),
    "food101": load_food101,
    "country211": load_country211,
    "oxford_pets": load_oxford_pets,
    "imagenet": load_imagenet,
    "imagenet_a": load_imagenet_a,
    "imagenet_r": load_imagenet_r,
    "folder": load_folder,
    # the paper's concept experiment: CIFAR-10 animal / object subsets (ccs_dist.data.paper_tasks)
    "cifar10animals": lambda root, transform, download=False: _cifar10_subset("cifar10animals", root, transform, download),
    "cifar10objects": lambda root, transform, download=False: _cifar10_subset("cifar10objects", root, transform, download),
    **_toy_loaders(),
}


def _cifar10_subset(name: str, root: Path, transform: Callable | None, download: bool) -> ClassificationTask:
    return cifar10_subset(load_cifar(10, root, transform, download), name)


def load_classification(name: str, root: Path | str, transform: Callable | None, download: bool = False) -> ClassificationTask:
    """Load a classification task by name (``cifar10`` ... ``imagenet_r``, or ``folder``) from ``root``."""
    if name not in LOADERS:
        raise UserError(f"unknown classification task {name!r}; known: {', '.join(LOADERS)}")
    return LOADERS[name](Path(root), transform, download=download)


def evenly_spaced_subset(n: int, limit: int | None) -> list[int] | None:
    """At most ``limit`` indices of ``range(n)``, evenly spaced and sorted; None when ``limit`` keeps all."""
    if limit is None or limit >= n:
        return None
    return sorted(set(np.linspace(0, n - 1, limit).round().astype(int).tolist()))
