"""World v3 (plant): determinism, equal cardinality, the hidden factors, its probe folders, tasks and image spec."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ccs_dist.data.images import resolve_image_set
from ccs_dist.data.planted import world
from ccs_dist.data.planted.scenes import TASKS, write_probe_folder, write_task
from ccs_dist.data.synthetic import write_all
from ccs_dist.toy.ground_truth import read_any_probe_labels


def test_every_factor_has_the_same_number_of_values():
    assert {len(v) for v in world.FACTORS.values()} == {world.CARDINALITY}
    assert set(world.HIDDEN_FACTORS) | set(world.POOL_FACTORS) == set(world.FACTOR_NAMES)
    assert sorted(world.HIDDEN_FACTORS.values()) == ["captioned", "rendered"]


def test_rendering_is_deterministic_in_the_generator_and_every_factor_changes_pixels():
    def draw(seed):
        rng = np.random.default_rng(seed)
        scenes, varied = world.sample_contrast_groups(rng, 40)
        return scenes, varied, world.render(scenes, rng)

    a, b, c = draw(3), draw(3), draw(4)
    assert np.array_equal(a[2], b[2]) and np.array_equal(a[0].values_NF, b[0].values_NF)
    assert not np.array_equal(a[2], c[2])
    # a factor the renderer ignored would leave a contrast group's images equal up to the jitter; compare noise-free
    scenes = world.Scenes(np.zeros((2, len(world.FACTOR_NAMES)), np.int64))
    for f in range(len(world.FACTOR_NAMES)):
        s = world.Scenes(scenes.values_NF.copy())
        s.values_NF[1, f] = 2
        img = world.render(s, np.random.default_rng([0, f])).astype(float)
        same = world.render(world.Scenes(np.zeros_like(s.values_NF)), np.random.default_rng([0, f])).astype(float)
        assert np.abs(img[1] - same[1]).mean() > 3 * np.abs(img[0] - same[0]).mean() + 0.5, world.FACTOR_NAMES[f]


def test_captions_never_name_the_rendered_hidden_factor_and_do_name_the_captioned_one():
    rng = np.random.default_rng(0)
    scenes = world.sample_scenes(rng, 400)
    texts = " ".join(world.captions_for(scenes, world.sample_mentions(rng, 400, p=0.9)))
    assert not any(v in texts for v in world.FACTORS["bgtone"])
    assert any(v in texts for v in world.FACTORS["rim"])
    with pytest.raises(ValueError):
        world.caption({"bgtone": "umber"})


def test_probe_folder_labels_every_factor_and_plant_spec_resolves(tmp_path):
    folder = write_probe_folder(tmp_path / "p", 12, 0)
    with open(folder / "labels.csv", newline="") as f:
        assert next(csv.reader(f)) == ["file", *world.FACTOR_NAMES]
    labels = read_any_probe_labels(folder)
    assert len(labels) == 12 and set(next(iter(labels.values()))) == set(world.FACTOR_NAMES)
    image_set = resolve_image_set("plant:12", tmp_path / "cache")
    assert len(image_set) == 12 and image_set.name == "plant:12:0"
    assert resolve_image_set("plant:12", tmp_path / "cache").fingerprint == image_set.fingerprint


def test_one_task_per_factor_hidden_ones_included(tmp_path):
    assert TASKS == tuple(f"plant-{f}" for f in world.FACTOR_NAMES)
    folder = write_task(tmp_path, "plant-bgtone", per_class=2)
    assert (folder / "classnames.txt").read_text().split("\n")[:4] == list(world.FACTORS["bgtone"])
    assert write_all(tmp_path / "d", ["plant-rim"])["plant-rim"].is_dir()
    with pytest.raises(KeyError):
        write_task(tmp_path, "plant-weight")
