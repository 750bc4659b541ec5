"""The paper's task definitions on synthetic data in the real formats: CIFAR-10 subsets, class names, bias
templates, video pooling."""

from __future__ import annotations

import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.data import datasets, metadata, synthetic
from ccs_dist.evaluate import video
from ccs_dist.data.paper_tasks import CIFAR10_SUBSETS, with_class_names


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


def test_video_mean_pooling_changes_text_to_video_only(tiny, root, monkeypatch):
    import numpy as np

    task = video.load_video_task("msrvtt", root)
    sets = [(), ("L2.H0", "L2.H1")]
    seen = []
    real_metrics = video.retrieval_metrics
    monkeypatch.setattr(video, "retrieval_metrics", lambda sim, truth: seen.append(sim.copy()) or real_metrics(sim, truth))
    renorm = video.evaluate_video_retrieval(tiny, task, sets, tiny.preprocess, n_frames=4)
    mean = video.evaluate_video_retrieval(tiny, task, sets, tiny.preprocess, n_frames=4, pooling="mean")
    # mean pooling scales each video's column of similarities by the norm of its mean frame (< 1 when frames differ)
    for sim_renorm, sim_mean in zip(seen[:2], seen[2:]):
        ratio = sim_mean / sim_renorm
        assert np.allclose(ratio, ratio[:1], rtol=1e-4) and (ratio < 1 - 1e-6).all() and (ratio > 0).all()
    for a, b in zip(renorm, mean):
        v2t = [k for k in a if k.startswith("v2t")]
        assert v2t and all(a[k] == b[k] for k in v2t)  # a video's scale cannot reorder its captions
    with pytest.raises(UserError, match="pooling"):
        video.evaluate_video_retrieval(tiny, task, sets, tiny.preprocess, n_frames=4, pooling="max")


def test_per_occupation_bias_ranks_each_occupations_own_images(tiny, tmp_path):
    import numpy as np

    from ccs_dist.evaluate import bias
    from ccs_dist.evaluate.biasmetrics import max_skew_at_k

    synthetic.write_all(tmp_path, ["socialcounterfactuals"])
    task = bias.load_socialcounterfactuals(tmp_path)
    occupations = ("doctor", "chef", "pilot", "teacher", "astronaut")
    masks = bias.occupation_masks(task, occupations)
    assert masks.sum(1).tolist() == [12, 12, 12, 12, 0]  # 4 counterfactual sets of 6 races x 2 genders
    # the helper equals MaxSkew computed on each occupation's own images by hand
    race = task.attributes[0]
    scores = np.random.default_rng(0).normal(size=(5, len(task.paths)))
    skew, _ = bias._per_occupation(scores, race, masks, len(race.names), 10, "socialcounterfactuals")
    by_hand = [max_skew_at_k(scores[q : q + 1, masks[q]], race.groups_N[masks[q]], len(race.names), 10)[0] for q in range(4)]
    np.testing.assert_allclose(skew, by_hand)
    sets = [()]
    per = bias.evaluate_bias(tiny, task, sets, tiny.preprocess, occupations, ["a photo of a {c}"], k=10, ranking="per_occupation")
    glob = bias.evaluate_bias(tiny, task, sets, tiny.preprocess, occupations, ["a photo of a {c}"], k=10)
    assert per[0]["socialcounterfactuals_race"]["n_occupations"] == 4.0
    assert "n_occupations" not in glob[0]["socialcounterfactuals_race"]
    with pytest.raises(UserError, match="no occupation has 20 images"):
        bias.evaluate_bias(tiny, task, sets, tiny.preprocess, occupations, ["a photo of a {c}"], k=20, ranking="per_occupation")
    with pytest.raises(UserError, match="bias ranking"):
        bias.evaluate_bias(tiny, task, sets, tiny.preprocess, occupations, ["a photo of a {c}"], ranking="local")
