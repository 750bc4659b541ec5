"""The paper's task definitions on synthetic data in the real formats: CIFAR-10 subsets, class names, bias
templates, video pooling."""

from __future__ import annotations

import pytest

from ccs_dist.errors import UserError
from ccs_dist.evaluate import datasets, metadata, synthetic, video
from ccs_dist.evaluate.paper_tasks import CIFAR10_SUBSETS, with_class_names


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = tmp_path_factory.mktemp("paperdata")
    synthetic.write_all(r, ["cifar10", "cifar100", "food101", "oxford_pets", "msrvtt"])
    return r


def _labels(task):
    return [task.dataset[i][1] for i in range(len(task))]


@pytest.mark.parametrize("name", ["cifar10animals", "cifar10objects"])
def test_cifar10_subsets_keep_their_classes_renumbered(root, name):
    full = datasets.load_classification("cifar10", root, None)
    sub = datasets.load_classification(name, root, None)
    keep = CIFAR10_SUBSETS[name]
    assert sub.classnames == keep and sub.templates == full.templates == metadata.templates("cifar10")
    expected = [keep.index(full.classnames[label]) for label in _labels(full) if full.classnames[label] in keep]
    assert _labels(sub) == expected and len(sub) == len(expected) > 0
    # the same pixels: the subset's first image is the first full-set image of one of its classes
    first = next(i for i, label in enumerate(_labels(full)) if full.classnames[label] in keep)
    assert list(sub.dataset[0][0].getdata()) == list(full.dataset[first][0].getdata())


def test_paper_class_names(root):
    c100 = with_class_names(datasets.load_classification("cifar100", root, None), "paper")
    assert "aquarium_fish" in c100.classnames and len(c100.classnames) == 100
    food = with_class_names(datasets.load_classification("food101", root, None), "paper")
    assert food.classnames[0] == "apple_pie"
    pets_std = datasets.load_classification("oxford_pets", root, None)
    pets = with_class_names(pets_std, "paper")
    assert len(pets.classnames) == 35 and pets.classnames[:2] == ("Abyssinian", "american")
    by_std = dict(zip(_labels(pets_std), _labels(pets)))  # one image per breed in the synthetic set
    std = pets_std.classnames
    assert by_std[std.index("American Bulldog")] == by_std[std.index("American Pit Bull Terrier")] == 1
    assert pets.classnames[by_std[std.index("Staffordshire Bull Terrier")]] == "staffordshire"
    cifar = datasets.load_classification("cifar10", root, None)
    assert with_class_names(cifar, "paper") is cifar and with_class_names(c100, "standard") is c100
    with pytest.raises(UserError, match="class_names"):
        with_class_names(cifar, "reference")
    assert metadata.templates("occupation_paper") == ("A {c}", "A photo of {c}", "A picture of {c}", "An image of {c}")


def test_video_mean_pooling_changes_text_to_video_only(tiny, root):
    task = video.load_video_task("msrvtt", root)
    sets = [(), ("L2.H0", "L2.H1")]
    renorm = video.evaluate_video_retrieval(tiny, task, sets, tiny.preprocess, n_frames=4)
    mean = video.evaluate_video_retrieval(tiny, task, sets, tiny.preprocess, n_frames=4, pooling="mean")
    for a, b in zip(renorm, mean):
        v2t = [k for k in a if k.startswith("v2t")]
        assert v2t and all(a[k] == b[k] for k in v2t)  # a video's scale cannot reorder its captions
    with pytest.raises(UserError, match="pooling"):
        video.evaluate_video_retrieval(tiny, task, sets, tiny.preprocess, n_frames=4, pooling="max")
