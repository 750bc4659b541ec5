"""The real loaders on synthetic data written in the distributed on-disk formats, and their errors."""

import csv
import shutil

import numpy as np
import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.data import datasets, metadata, synthetic
from ccs_dist.evaluate import bias, video


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("evaldata")
    synthetic.write_all(r)
    return r


def _labels(task):
    return [task.dataset[i][1] for i in range(len(task))]


def test_package_data_sizes():
    assert len(metadata.cifar_classnames(10)) == 10 and len(metadata.cifar_classnames(100)) == 100
    assert len(metadata.food101_classnames()) == 101 and len(metadata.country211_codes_and_names()) == 211
    assert len(metadata.oxford_pets_breeds()) == 37
    assert len(metadata.imagenet_wnids()) == 1000 == len(metadata.imagenet_classnames())
    for subset in ("imagenet_a", "imagenet_r"):
        wnids = metadata.imagenet_subset_wnids(subset)
        assert len(wnids) == 200 and set(wnids) <= set(metadata.imagenet_wnids())
    assert len(metadata.templates("imagenet")) == 80 and len(metadata.templates("cifar10")) == 18
    assert all("{c}" in t for t in metadata.templates("country211"))


@pytest.mark.parametrize("name,n,n_classes", [("cifar10", 20, 10), ("cifar100", 100, 100), ("food101", 6, 101),
                                              ("country211", 6, 211), ("oxford_pets", 37, 37), ("imagenet", 6, 1000),
                                              ("imagenet_a", 6, 200), ("imagenet_r", 6, 200)])
def test_classification_loaders(root, name, n, n_classes):
    task = datasets.load_classification(name, root, transform=None)
    assert len(task) == n and len(task.classnames) == n_classes and task.templates
    image, label = task.dataset[0]
    assert image.size[0] > 0 and 0 <= label < n_classes


def test_labels_map_to_the_right_class_names(root):
    cifar = datasets.load_classification("cifar10", root, None)
    assert sorted(set(_labels(cifar))) == list(range(10))
    food = datasets.load_classification("food101", root, None)
    assert sorted(set(_labels(food))) == [0, 1, 2] and food.classnames[2] == "baklava"
    country = datasets.load_classification("country211", root, None)
    names = {country.classnames[label] for label in _labels(country)}
    assert names == {"Andorra", "Zimbabwe", "Cayman Islands"}  # folders AD, ZW and KY (index 105)
    pets = datasets.load_classification("oxford_pets", root, None)
    assert _labels(pets) == list(range(37)) and pets.classnames[0] == "Abyssinian"
    ina = datasets.load_classification("imagenet_a", root, None)
    by_wnid = metadata.imagenet_names_by_wnid()
    wnids = metadata.imagenet_subset_wnids("imagenet_a")
    assert {ina.classnames[label] for label in _labels(ina)} == {by_wnid[wnids[0]], by_wnid[wnids[99]], by_wnid[wnids[199]]}
    imnet = datasets.load_classification("imagenet", root, None)
    assert sorted(set(_labels(imnet))) == [0, 499, 999]


def test_folder_loader_and_count_mismatch(tmp_path):
    synthetic.write_folder(tmp_path / "shapes")
    task = datasets.load_classification("folder", tmp_path / "shapes", None)
    assert task.name == "folder:shapes" and task.classnames[1] == "green circle" and _labels(task) == [0, 0, 1, 1, 2, 2]
    (tmp_path / "shapes" / "classnames.txt").write_text("a\nb\n")
    with pytest.raises(UserError, match="3 class folders but 2 class names"):
        datasets.load_classification("folder", tmp_path / "shapes", None)


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "food101", "country211", "oxford_pets", "imagenet", "imagenet_a", "imagenet_r"])
def test_missing_dataset_prints_expected_layout(tmp_path, name):
    with pytest.raises(UserError, match="expected layout") as e:
        datasets.load_classification(name, tmp_path, None)
    assert "\n" not in str(e.value)


def test_wrong_wnid_folder_is_rejected(root, tmp_path):
    shutil.copytree(root / "imagenet-r", tmp_path / "imagenet-r")
    (tmp_path / "imagenet-r" / "n99999999").mkdir()
    with pytest.raises(UserError, match="n99999999"):
        datasets.load_classification("imagenet_r", tmp_path, None)


def test_unknown_task():
    with pytest.raises(UserError, match="unknown classification task"):
        datasets.load_classification("mnist", ".", None)


def test_video_layouts_and_frame_sampling(root):
    for name, n_caps in (("msrvtt", 1), ("msvd", 2), ("didemo", 2)):
        task = video.load_video_task(name, root)
        assert len(task.video_ids) == 4 and all(len(c) == n_caps for c in task.captions)
        assert all(p.is_file() for p in task.paths)
    assert video.segment_middles(16, 4) == [2, 6, 10, 14]
    assert video.segment_middles(3, 6) == [0, 0, 1, 1, 2, 2]
    frames = video.read_frames(video.load_video_task("msrvtt", root).paths[0], 12)
    assert len(frames) == 12 and frames[0].size == (32, 32)
    with pytest.raises(UserError, match="expected layout"):
        video.load_video_task("msrvtt", root / "nowhere")


def test_missing_video_file_is_listed(root, tmp_path):
    shutil.copytree(root / "msrvtt", tmp_path / "msrvtt")
    (tmp_path / "msrvtt" / "videos" / "all" / "video7001.mp4").unlink()
    task = video.load_video_task("msrvtt", tmp_path)
    assert task.missing == ("video7001",) and len(task.video_ids) == 3


def test_fairface_groups(root):
    task = bias.load_fairface(root)
    race, gender = task.attributes
    assert race.name == "race" and len(race.names) == 6 and "East/Southeast Asian" in race.names
    assert gender.names == ("Male", "Female")
    counts = np.bincount(race.groups_N)
    assert counts[race.names.index("East/Southeast Asian")] == 8 and counts.sum() == 28


def test_fairface_bad_value_and_single_group(root, tmp_path):
    shutil.copytree(root / "fairface", tmp_path / "fairface")
    path = tmp_path / "fairface" / "fairface_label_val.csv"
    rows = list(csv.DictReader(open(path)))
    rows[3]["race"] = ""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(UserError, match="line 5: race ''"):
        bias.load_fairface(tmp_path)
    for r in rows:
        r["race"], r["gender"] = "White", "Male"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(UserError, match="single group"):
        bias.load_fairface(tmp_path)


def test_socialcounterfactuals(root):
    task = bias.load_socialcounterfactuals(root)
    names = {a.name: a for a in task.attributes}
    assert len(names["race"].names) == 6 and names["gender"].names == ("man", "woman")
    assert len(task.paths) == 48 and (names["race"].groups_N >= 0).all()
    with pytest.raises(UserError, match="expected layout"):
        bias.load_socialcounterfactuals(root / "nowhere")


def test_own_synthetic_cifar_is_read_quietly_but_a_foreign_copy_warns(tmp_path, caplog):
    from ccs_dist.data.synthetic import SYNTHETIC_MARKER

    folder = synthetic.write_cifar(tmp_path, 10)
    caplog.set_level("INFO", logger="ccs_dist")
    assert len(datasets.load_classification("cifar10", tmp_path, None).dataset) == 20
    assert "differ from the official release" not in caplog.text and "synthetic copy" in caplog.text
    (folder / SYNTHETIC_MARKER).unlink()  # now it is just some re-packed copy
    caplog.clear()
    datasets.load_classification("cifar10", tmp_path, None)
    assert any(r.levelname == "WARNING" and "differ from the official release" in r.message for r in caplog.records)
