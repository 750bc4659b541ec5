"""Small synthetic datasets written in the real on-disk formats, so tests and demos run the real loaders.

Images are coloured noise (a per-class colour plus noise, seeded); nothing here resembles the real data,
only the file formats and layouts do. The ``toy-<factor>`` tasks are the exception: held-out images of the
toy world (:mod:`ccs_dist.toy`), which the bundled ``ccs-toy`` model was trained on. Every writer takes the data root and returns the folder it wrote.

    python -m ccs_dist.data.synthetic DATA_ROOT [task ...]
"""

from __future__ import annotations

import csv
import json
import logging
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ccs_dist.data import metadata
from ccs_dist.data.toy.scenes import TASKS as TOY_TASKS
from ccs_dist.data.toy.scenes import write_task as write_toy_task
from ccs_dist.data.planted.scenes import TASKS as PLANT_TASKS
from ccs_dist.data.planted.scenes import write_task as write_plant_task

log = logging.getLogger(__name__)
SYNTHETIC_MARKER = "ccs_dist_synthetic.json"  # in a folder written here: its loader knows the copy is ours


def _image(rng: np.random.Generator, cls: int, size: int = 40) -> np.ndarray:
    """[size, size, 3] uint8: a class colour plus noise."""
    colour = np.array([(cls * 67) % 256, (cls * 131 + 50) % 256, (cls * 197 + 100) % 256], dtype=np.float64)
    noise = rng.normal(0, 40, size=(size, size, 3))
    return np.clip(colour + noise, 0, 255).astype(np.uint8)


def _save(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


# --- CIFAR ----------------------------------------------------------------------------------------------


def write_cifar(root: Path, n_classes: int = 10, per_class: int = 2, seed: int = 0) -> Path:
    """cifar-10-batches-py/ or cifar-100-python/: pickled dicts with uint8 ``data`` [N, 3072] (R, G, B planes)."""
    rng = np.random.default_rng(seed)
    names = [n.replace(" ", "_") for n in metadata.cifar_classnames(n_classes)]

    def batch(n_per_class: int, label: str) -> dict:
        labels = [c for c in range(n_classes) for _ in range(n_per_class)]
        data = np.stack([_image(rng, c, 32).transpose(2, 0, 1).reshape(-1) for c in labels]) if labels else np.zeros((0, 3072), np.uint8)
        entry = {"batch_label": label, "data": data, "filenames": [f"synthetic_{i}.png" for i in range(len(labels))]}
        if n_classes == 10:
            entry["labels"] = labels
        else:
            entry["fine_labels"] = labels
            entry["coarse_labels"] = [c // 5 for c in labels]
        return entry

    def dump(obj, path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)

    if n_classes == 10:
        folder = Path(root) / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, 6):
            dump(batch(0, f"training batch {i} of 5"), folder / f"data_batch_{i}")
        dump(batch(per_class, "testing batch 1 of 1"), folder / "test_batch")
        dump({"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072}, folder / "batches.meta")
    else:
        folder = Path(root) / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        dump(batch(0, "training batch 1 of 1"), folder / "train")
        dump(batch(per_class, "testing batch 1 of 1"), folder / "test")
        dump({"fine_label_names": names, "coarse_label_names": [f"superclass_{i}" for i in range(20)]}, folder / "meta")
    (folder / SYNTHETIC_MARKER).write_text(json.dumps({"task": f"cifar{n_classes}", "seed": seed}) + "\n", encoding="utf-8")
    return folder


# --- Food-101 -------------------------------------------------------------------------------------------


def write_food101(root: Path, n_classes: int = 3, per_class: int = 2, seed: int = 0) -> Path:
    """food-101/images/<class>/<id>.jpg and food-101/meta/{classes.txt, labels.txt, train/test .json/.txt}."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "food-101"
    folders, names = metadata.food101_folders(), metadata.food101_classnames()
    test = {f: [] for f in folders}
    train = {f: [] for f in folders}
    for c, folder in enumerate(folders[:n_classes]):
        for i in range(per_class):
            image_id = f"{100000 + c * 100 + i}"
            _save(_image(rng, c), base / "images" / folder / f"{image_id}.jpg")
            test[folder].append(f"{folder}/{image_id}")
    meta = base / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    (meta / "classes.txt").write_text("".join(f + "\n" for f in folders))
    (meta / "labels.txt").write_text("".join(n.capitalize() + "\n" for n in names))
    for split, table in (("test", test), ("train", train)):
        (meta / f"{split}.json").write_text(json.dumps(table))
        (meta / f"{split}.txt").write_text("".join(p + "\n" for ps in table.values() for p in ps))
    return base


# --- Country211, ImageNet family, folder ---------------------------------------------------------------


def write_country211(root: Path, n_classes: int = 3, per_class: int = 2, seed: int = 0) -> Path:
    """country211/{train,valid,test}/<ISO code>/<id>.jpg (test filled, train/valid one image each)."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "country211"
    codes = [c for c, _ in metadata.country211_codes_and_names()]
    chosen = [codes[i] for i in np.linspace(0, len(codes) - 1, n_classes).astype(int)]
    for code in chosen:
        c = codes.index(code)
        for i in range(per_class):
            _save(_image(rng, c), base / "test" / code / f"{c}_{i}.jpg")
        for split in ("train", "valid"):
            _save(_image(rng, c), base / split / code / f"{c}_0.jpg")
    return base


def _wnid_tree(folder: Path, wnids: Sequence[str], all_wnids: Sequence[str], per_class: int, seed: int, suffix: str) -> Path:
    rng = np.random.default_rng(seed)
    for w in wnids:
        c = list(all_wnids).index(w)
        for i in range(per_class):
            _save(_image(rng, c), folder / w / f"{w}_{i}{suffix}")
    return folder


def write_imagenet(root: Path, n_classes: int = 3, per_class: int = 2, seed: int = 0) -> Path:
    """imagenet/val/<wnid>/<wnid>_<i>.JPEG for evenly spaced classes."""
    wnids = metadata.imagenet_wnids()
    chosen = [wnids[i] for i in np.linspace(0, len(wnids) - 1, n_classes).astype(int)]
    return _wnid_tree(Path(root) / "imagenet" / "val", chosen, wnids, per_class, seed, ".JPEG")


def write_imagenet_subset(root: Path, subset: str, n_classes: int = 3, per_class: int = 2, seed: int = 0) -> Path:
    """imagenet-a/<wnid>/... or imagenet-r/<wnid>/... for evenly spaced classes of the 200."""
    wnids = metadata.imagenet_subset_wnids(subset)
    chosen = [wnids[i] for i in np.linspace(0, len(wnids) - 1, n_classes).astype(int)]
    return _wnid_tree(Path(root) / subset.replace("_", "-"), chosen, wnids, per_class, seed, ".jpg")


def write_folder(root: Path, classnames: Sequence[str] = ("red square", "green circle", "blue star"), per_class: int = 2, seed: int = 0) -> Path:
    """ROOT/<class_i>/<n>.png plus ROOT/classnames.txt (ROOT itself is the task root)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for c, _ in enumerate(classnames):
        for i in range(per_class):
            _save(_image(rng, c), root / f"class_{c:03d}" / f"{i}.png")
    (root / "classnames.txt").write_text("".join(n + "\n" for n in classnames))
    return root


# --- Oxford-IIIT Pets -----------------------------------------------------------------------------------


def write_oxford_pets(root: Path, n_classes: int = 37, per_class: int = 1, seed: int = 0) -> Path:
    """oxford-iiit-pet/images/<Breed>_<n>.jpg, annotations/{list,trainval,test}.txt and annotations/trimaps/."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "oxford-iiit-pet"
    breeds = metadata.oxford_pets_breeds()
    lines, per_species = [], {"cat": 0, "dog": 0}
    for c, (prefix, _, species) in enumerate(breeds[:n_classes]):
        per_species[species] += 1
        for i in range(per_class):
            image_id = f"{prefix}_{i + 1}"
            _save(_image(rng, c), base / "images" / f"{image_id}.jpg")
            lines.append(f"{image_id} {c + 1} {1 if species == 'cat' else 2} {per_species[species]}\n")
    ann = base / "annotations"
    (ann / "trimaps").mkdir(parents=True, exist_ok=True)
    (ann / "test.txt").write_text("".join(lines))
    (ann / "trainval.txt").write_text("")
    (ann / "list.txt").write_text("#Image CLASS-ID SPECIES BREED ID\n" + "".join(lines))
    return base


# --- bias sets ------------------------------------------------------------------------------------------

_FF_RACES = ("White", "Black", "Latino_Hispanic", "East Asian", "Southeast Asian", "Indian", "Middle Eastern")


def write_fairface(root: Path, n_images: int = 28, seed: int = 0) -> Path:
    """fairface/fairface_label_val.csv (file,age,gender,race,service_test) and fairface/val/<n>.jpg."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "fairface"
    rows = []
    for i in range(n_images):
        race, gender = _FF_RACES[i % len(_FF_RACES)], ("Male", "Female")[(i // len(_FF_RACES)) % 2]
        _save(_image(rng, i % len(_FF_RACES), 32), base / "val" / f"{i + 1}.jpg")
        rows.append({"file": f"val/{i + 1}.jpg", "age": "20-29", "gender": gender, "race": race, "service_test": "True"})
    with open(base / "fairface_label_val.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "age", "gender", "race", "service_test"])
        w.writeheader()
        w.writerows(rows)
    return base


def write_socialcounterfactuals(root: Path, n_sets: int = 4, seed: int = 0) -> Path:
    """socialcounterfactuals/metadata.csv (HF ``Intel/SocialCounterfactuals`` columns) and images/<n>.jpg.

    Each counterfactual set varies race (x gender) for one occupation caption, as the race-gender segment.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "socialcounterfactuals"
    races, genders = ("Asian", "Black", "Indian", "Latino", "Middle Eastern", "White"), ("man", "woman")
    occupations = ("doctor", "chef", "pilot", "teacher")
    rows, n = [], 0
    for s in range(n_sets):
        occ = occupations[s % len(occupations)]
        for r, race in enumerate(races):
            for gender in genders:
                name = f"images/{n:05d}.jpg"
                _save(_image(rng, r, 32), base / name)
                rows.append({
                    "file_name": name, "dataset_segment": "race-gender", "a1_type": "race", "a1": race,
                    "a2_type": "gender", "a2": gender, "a1a2": f"{race} {gender}", "counterfactual_set": f"set_{s}",
                    "caption": f"A photo of a {race} {gender} working as a {occ}",
                })
                n += 1
    with open(base / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return base


# --- videos ---------------------------------------------------------------------------------------------


def write_video(path: Path, n_frames: int = 16, size: int = 32, seed: int = 0, fps: int = 8) -> Path:
    """An MP4 (H.264 when available, else MPEG-4 part 2) of moving coloured noise, written with PyAV."""
    import av

    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for t in range(n_frames):
            arr = _image(rng, seed + t // 4, size)
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_msrvtt(root: Path, n_videos: int = 4, seed: int = 0) -> Path:
    """msrvtt/MSRVTT_JSFUSION_test.csv and msrvtt/videos/all/video<n>.mp4."""
    base = Path(root) / "msrvtt"
    rows = []
    for i in range(n_videos):
        vid = f"video{7000 + i}"
        write_video(base / "videos" / "all" / f"{vid}.mp4", seed=seed + 10 * i)
        rows.append({"key": f"ret{i}", "vid_key": f"msr{7000 + i}", "video_id": vid, "sentence": f"a synthetic clip number {i}"})
    with open(base / "MSRVTT_JSFUSION_test.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["key", "vid_key", "video_id", "sentence"])
        w.writeheader()
        w.writerows(rows)
    return base


def write_msvd(root: Path, n_videos: int = 4, seed: int = 0) -> Path:
    """msvd/raw-captions.pkl, msvd/{train,val,test}_list.txt and msvd/YouTubeClips/<id>.avi."""
    base = Path(root) / "msvd"
    captions, ids = {}, []
    for i in range(n_videos):
        vid = f"clip{i:03d}_{5 * i}_{5 * i + 4}"
        write_video(base / "YouTubeClips" / f"{vid}.avi", seed=seed + 10 * i)
        captions[vid] = [["a", "synthetic", "clip", str(i)], ["noise", "video", str(i)]]
        ids.append(vid)
    with open(base / "raw-captions.pkl", "wb") as f:
        pickle.dump(captions, f)
    (base / "test_list.txt").write_text("".join(v + "\n" for v in ids))
    (base / "train_list.txt").write_text("")
    (base / "val_list.txt").write_text("")
    return base


def write_didemo(root: Path, n_videos: int = 4, seed: int = 0) -> Path:
    """didemo/test_data.json (LocalizingMoments entries) and didemo/videos/<stem>.mp4."""
    base = Path(root) / "didemo"
    entries = []
    for i in range(n_videos):
        stem = f"{1000 + i}@N00_{i}_synthetic"
        write_video(base / "videos" / f"{stem}.mp4", n_frames=24, seed=seed + 10 * i)
        for j in range(2):
            entries.append({"video": f"{stem}.mov", "times": [[j, j + 1]], "description": f"moment {j} of synthetic clip {i}", "annotation_id": 10 * i + j})
    (base / "test_data.json").write_text(json.dumps(entries))
    return base


WRITERS = {
    "cifar10": lambda root: write_cifar(root, 10),
    "cifar10animals": lambda root: write_cifar(root, 10),  # subsets of the CIFAR-10 files
    "cifar10objects": lambda root: write_cifar(root, 10),
    "cifar100": lambda root: write_cifar(root, 100, per_class=1),
    "food101": write_food101,
    "country211": write_country211,
    "oxford_pets": write_oxford_pets,
    "imagenet": write_imagenet,
    "imagenet_a": lambda root: write_imagenet_subset(root, "imagenet_a"),
    "imagenet_r": lambda root: write_imagenet_subset(root, "imagenet_r"),
    "fairface": write_fairface,
    "socialcounterfactuals": write_socialcounterfactuals,
    "msrvtt": write_msrvtt,
    "msvd": write_msvd,
    "didemo": write_didemo,
    **{task: (lambda root, task=task: write_toy_task(root, task)) for task in TOY_TASKS},
    **{task: (lambda root, task=task: write_plant_task(root, task)) for task in PLANT_TASKS},
}


def write_all(root: Path | str, tasks: Sequence[str] | None = None) -> dict[str, Path]:
    """Write the synthetic version of each task (default: all) under ``root``."""
    out = {}
    for name in tasks or WRITERS:
        if name not in WRITERS:
            raise KeyError(f"no synthetic writer for {name!r}; known: {', '.join(WRITERS)}")
        out[name] = WRITERS[name](Path(root))
        log.info("wrote synthetic %s under %s", name, out[name])
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    if len(sys.argv) < 2:
        sys.exit("usage: python -m ccs_dist.data.synthetic DATA_ROOT [task ...]")
    write_all(sys.argv[1], sys.argv[2:] or None)
