"""Probe image sets: a folder (ImageFolder layout or flat), a torchvision dataset, ``synthetic:N`` or ``toy:N``.

Every set is indexable (``load(i) -> PIL.Image``, ``image_id(i) -> str``), knows its length and has a
``fingerprint`` that changes when its content changes (the decomposition cache key).
Spec strings (CLI, job specs): ``synthetic:N[:SEED]``, ``toy:N[:SEED]`` (the toy world of :mod:`ccs_dist.toy`,
with its factors in ``labels.csv``), ``plant:N[:SEED]`` (world v3 of :mod:`ccs_dist.data.planted`, every factor incl. the hidden ones in ``labels.csv``), ``folder:PATH`` or a bare PATH, ``NAME:ROOT`` for a
torchvision dataset (``cifar10``, ``cifar100``, ``imagenet``, ``food101``, ``stl10``).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from PIL import Image

from ccs_dist.core.errors import UserError
from ccs_dist.artifacts.storage import local_dir
from ccs_dist.artifacts.store import atomic_write_json, read_json
from ccs_dist.data.synthetic_images import write_synthetic_images
from ccs_dist.data.toy.scenes import write_probe_folder
from ccs_dist.data.planted.scenes import write_probe_folder as write_plant_probe_folder
from ccs_dist.data.datasets import load_cifar

log = logging.getLogger(__name__)

# Most pixels a probe image may have (40 MP, e.g. 6300 x 6300; PIL only warns at 89 MP and refuses at 179 MP).
# Checked from the header before decoding, so a huge file costs no memory; it is an unreadable image
# (skipped and counted, or fatal with --on-bad-image error). The model sees 224-336 px anyway.
MAX_IMAGE_PIXELS = 40_000_000

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


class ImageSet(Protocol):
    name: str

    def __len__(self) -> int: ...
    def load(self, index: int) -> Image.Image: ...
    def image_id(self, index: int) -> str: ...
    @property
    def fingerprint(self) -> str: ...


class FolderImageSet:
    """Image files under ``root`` (recursively, sorted): class sub-folders (ImageFolder) or flat."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise UserError(f"image folder {self.root} does not exist: give a folder of images (flat or one sub-folder per class)")
        self.paths = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.paths:
            raise UserError(
                f"image folder {self.root} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                "point --images at a folder with images"
            )
        self.name = f"folder:{self.root}"
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, index: int) -> Image.Image:
        with Image.open(self.paths[index]) as im:
            check_pixels(im)
            return im.convert("RGB")

    def image_id(self, index: int) -> str:
        return self.paths[index].relative_to(self.root).as_posix()

    @property
    def fingerprint(self) -> str:
        """Relative path, size and mtime of every file (cheap; a rewritten file changes it)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for p in self.paths:
                st = p.stat()
                h.update(f"{p.relative_to(self.root).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint


class ImageTooLarge(ValueError):
    pass


def check_pixels(im: Image.Image, limit: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an opened (not yet decoded) image above ``limit`` pixels."""
    w, h = im.size
    if w * h > limit:
        raise ImageTooLarge(f"{w}x{h} = {w * h / 1e6:.0f} MP is over the {limit / 1e6:.0f} MP limit for probe images; downscale it")


def _torchvision_factories() -> dict[str, Callable[[Path], object]]:
    import torchvision.datasets as tvd

    def cifar(n_classes: int):
        return lambda root: load_cifar(n_classes, Path(root), transform=None).dataset

    return {
        "cifar10": cifar(10),
        "cifar100": cifar(100),
        "imagenet": lambda root: tvd.ImageNet(str(root), split="val"),
        "food101": lambda root: tvd.Food101(str(root), split="test", download=False),
        "stl10": lambda root: tvd.STL10(str(root), split="test", download=False),
    }


class TorchvisionImageSet:
    """A torchvision dataset (evaluation split) used as probe images; its labels are ignored."""

    def __init__(self, dataset_name: str, root: str | Path):
        factories = _torchvision_factories()
        if dataset_name not in factories:
            raise UserError(f"unknown torchvision probe set {dataset_name!r}: use one of {', '.join(sorted(factories))}")
        self.root = Path(root).expanduser()
        try:
            self.dataset = factories[dataset_name](self.root)
        except UserError as e:
            raise UserError(f"could not open {dataset_name} under {self.root}: {e}") from e
        except (RuntimeError, FileNotFoundError, OSError) as e:
            raise UserError(
                f"could not open {dataset_name} under {self.root} ({str(e).strip().splitlines()[0][:160]}): "
                "download it there with torchvision (download=True) or fix the root"
            ) from e
        self.name = f"{dataset_name}:{self.root}"
        self._dataset_name = dataset_name

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int) -> Image.Image:
        image = self.dataset[index][0]
        return image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(image).convert("RGB")

    def image_id(self, index: int) -> str:
        return f"{self._dataset_name}/{index}"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self._dataset_name}|{self.root.resolve()}|{len(self)}".encode()).hexdigest()


@dataclass(frozen=True)
class SyntheticSpec:
    n: int
    seed: int = 0
    size: int = 224
    version: int = 2  # bump when the generator changes (2: one generator per image, written in parallel): the folder and every cache key change with it


def synthetic_image_set(spec: SyntheticSpec, cache_root: str | Path) -> FolderImageSet:
    """Procedural images (shapes, colours, textures, counts, digits/letters) written once as PNG files.

    The folder also holds ``labels.csv`` with what each image shows, for tests that need ground truth.
    """

    folder = local_dir(cache_root) / "images" / f"synthetic-n{spec.n}-s{spec.seed}-px{spec.size}-v{spec.version}"
    done = folder / "complete.json"
    if not done.is_file() or read_json(done).get("n") != spec.n:
        write_synthetic_images(folder, spec.n, spec.seed, spec.size)
        atomic_write_json(done, {"n": spec.n, "seed": spec.seed, "size": spec.size, "version": spec.version})
    return _generated(folder, f"synthetic:{spec.n}:{spec.seed}:px{spec.size}:v{spec.version}", f"synthetic:{spec.n}:{spec.seed}")


def read_synthetic_labels(folder: str | Path) -> list[dict[str, str]]:
    with open(Path(folder) / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


TOY_VERSION = 1  # bump when the toy world's generator changes


def toy_image_set(n: int, seed: int, cache_root: str | Path) -> FolderImageSet:
    """``n`` held-out toy-world images (never seen in training) with their factors in ``labels.csv``."""

    folder = write_probe_folder(local_dir(cache_root) / "images" / f"toy-n{n}-s{seed}-v{TOY_VERSION}", n, seed)
    return _generated(folder, f"toy:{n}:{seed}:v{TOY_VERSION}", f"toy:{n}:{seed}")


PLANT_VERSION = 1  # bump when world v3's generator changes


def plant_image_set(n: int, seed: int, cache_root: str | Path) -> FolderImageSet:
    """``n`` held-out world-v3 images with every factor (hidden ones too) in ``labels.csv``."""

    folder = write_plant_probe_folder(local_dir(cache_root) / "images" / f"plant-n{n}-s{seed}-v{PLANT_VERSION}", n, seed)
    return _generated(folder, f"plant:{n}:{seed}:v{PLANT_VERSION}", f"plant:{n}:{seed}")


def _generated(folder: Path, generator: str, name: str) -> FolderImageSet:
    """A generated set: the same parameters write the same files on every node, so its fingerprint is the
    generator and each file's relative path and size, not its mtime (each node writes its own copy when the
    cache root is remote, and their decompositions must share one key)."""
    image_set = FolderImageSet(folder)
    image_set.name = name
    h = hashlib.sha256(f"generated|{generator}\n".encode())
    for p in image_set.paths:
        h.update(f"{p.relative_to(folder).as_posix()}|{p.stat().st_size}\n".encode())
    image_set._fingerprint = h.hexdigest()
    return image_set


def _count_and_seed(text: str) -> tuple[int, int]:
    kind, *parts = text.split(":")
    try:
        n = int(parts[0])
        seed = int(parts[1]) if len(parts) > 1 else 0
    except (ValueError, IndexError) as e:
        raise UserError(f"bad image spec {text!r}: write {kind}:N or {kind}:N:SEED, e.g. {kind}:256") from e
    if n < 1:
        raise UserError(f"bad image spec {text!r}: N must be at least 1")
    return n, seed


GENERATED_SETS = ("synthetic", "toy", "plant")  # KIND:N[:SEED] sets written into the cache: no path in them


def resolve_image_set(spec: str | Path, cache_root: str | Path = "cache") -> ImageSet:
    """Parse an image-set spec string (see the module docstring)."""
    text = str(spec)
    if text.startswith("synthetic:"):
        n, seed = _count_and_seed(text)
        return synthetic_image_set(SyntheticSpec(n=n, seed=seed), cache_root)
    if text.startswith("toy:"):
        n, seed = _count_and_seed(text)
        return toy_image_set(n, seed, cache_root)
    if text.startswith("plant:"):
        n, seed = _count_and_seed(text)
        return plant_image_set(n, seed, cache_root)
    if text.startswith("folder:"):
        return FolderImageSet(text[len("folder:"):])
    name, sep, root = text.partition(":")
    if sep and name in _torchvision_factories():
        return TorchvisionImageSet(name, root)
    if sep and not Path(text).exists() and name.isidentifier():
        raise UserError(
            f"unknown image set {text!r}: use synthetic:N, toy:N, plant:N, folder:PATH, a folder path, "
            f"or one of {', '.join(sorted(_torchvision_factories()))} as NAME:ROOT"
        )
    return FolderImageSet(text)
