"""The image-grounded scores on the trained toy CLIP, and the cases where they must fail: a swapped label,
a random-init model, a permuted image set. The judge is planted_v2 itself (``allow_self``: the toy world has
no other trained CLIP yet), which the scores must still be able to fail under."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest

from ccs_dist.card.config import CardConfig, ReferenceConfig
from ccs_dist.card.activations import first_direction
from ccs_dist.card.inputs import card_inputs
from ccs_dist.card.reference import load_reference
from ccs_dist.card.run import head_image_scores
from ccs_dist.core.errors import UserError
from ccs_dist.data.images import resolve_image_set
from ccs_dist.data.toy.scenes import read_probe_labels
from ccs_dist.data.toy.world import FACTORS
from ccs_dist.decomposition.config import DecomposeConfig
from ccs_dist.models.loading import load_model
from ccs_dist.stages.decompose import decompose_stage
from ccs_dist.toy.planted import PLANTED

PROBE = "toy:256"
CONFIG = CardConfig(enabled=True, reference=ReferenceConfig("ccs-toy", "planted_v2", allow_self=True),
                    prompt="a {label} object")
VALUES = [v for vals in FACTORS.values() for v in vals]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("card-cache"))


@pytest.fixture(scope="module")
def reference():
    return load_model("ccs-toy", "planted_v2")


def _inputs(tag: str, reference, cache: str):
    audited = load_model("ccs-toy", tag)
    artifact = decompose_stage(audited, DecomposeConfig(images=PROBE, batch_size=64), layers=4, cache_dir=cache,
                               progress=False).artifact
    images = resolve_image_set(PROBE, cache)
    return card_inputs(audited, reference, artifact, images, VALUES, CONFIG), artifact.ids(), read_probe_labels(images.root)


def _label(inputs, ids, truth, layer: int, head: int, factor: str) -> str:
    """The value of ``factor`` most common among the head's top fit images (the + pole of its first direction)."""
    x = inputs.terms_NLHE[:, inputs.layers.index(layer), head]
    u, mean = first_direction(x, inputs.split.fit_N)
    top = inputs.split.fit_N[np.argsort(-((x[inputs.split.fit_N] - mean) @ u))[:16]]
    return collections.Counter(FACTORS[factor][truth[ids[i]][factor]] for i in top).most_common(1)[0][0]


def _swapped(factor: str) -> str:
    return FACTORS[next(f for f in FACTORS if f != factor)][0]  # a value of another factor


def _mean_scores(inputs, labels: dict) -> dict[str, float]:
    rows = [r for (layer, head), label in labels.items() for r in head_image_scores(inputs, layer, head, label, CONFIG)]
    return {s: float(np.mean([r["value"] for r in rows if r["score"] == s])) for s in ("detection_auroc", "simulation_rho")}


@pytest.fixture(scope="module")
def planted(reference, cache):
    inputs, ids, truth = _inputs("planted_v2", reference, cache)
    labels = {(l, h): _label(inputs, ids, truth, l, h, f) for (l, h), f in PLANTED.items()}
    return inputs, labels


def test_the_right_label_scores_and_a_swapped_label_falls(planted):
    inputs, labels = planted
    right = _mean_scores(inputs, labels)
    swapped = _mean_scores(inputs, {key: _swapped(PLANTED[key]) for key in labels})
    assert right["detection_auroc"] > 0.8 and right["simulation_rho"] > 0.5, right
    assert swapped["detection_auroc"] < 0.6 and swapped["simulation_rho"] < 0.15, swapped


def test_a_permuted_image_set_falls_to_chance(planted):
    inputs, labels = planted
    order = np.random.default_rng(0).permutation(len(inputs.split.heldout_N))
    permuted = dataclasses.replace(inputs, ref_NE=inputs.ref_NE[order], sim_NT=inputs.sim_NT[order])
    scores = _mean_scores(permuted, labels)
    assert abs(scores["detection_auroc"] - 0.5) < 0.12 and abs(scores["simulation_rho"]) < 0.1, scores


def test_a_random_init_model_scores_at_chance(reference, cache):
    inputs, ids, truth = _inputs("none", reference, cache)
    labels = {(l, h): _label(inputs, ids, truth, l, h, f) for (l, h), f in PLANTED.items()}
    scores = _mean_scores(inputs, labels)
    assert scores["detection_auroc"] < 0.7 and abs(scores["simulation_rho"]) < 0.2, scores


def test_the_audited_model_is_no_reference_unless_allowed(reference):
    with pytest.raises(UserError, match="is the audited model"):
        load_reference(dataclasses.replace(CONFIG, reference=ReferenceConfig("ccs-toy", "planted_v2")), reference)
    with pytest.raises(UserError, match="reference.arch is required"):
        load_reference(CardConfig(enabled=True), reference)
