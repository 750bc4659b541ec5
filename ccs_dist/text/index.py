"""A FAISS inner-product index over text embeddings: exact for small pools, IVF for large ones.

Persisted in the cache next to the embeddings it was built from.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ccs_dist.artifacts.store import ArtifactStore, atomic_write_bytes, content_key
import hashlib

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    ivf_threshold: int = 50_000  # pools at least this large get an IVF index
    nlist: int | None = None  # IVF cells; None: sqrt(T)
    nprobe: int = 32  # IVF cells visited per query
    seed: int = 0


class TextIndex:
    """Wraps a faiss index; ``search(queries [Q, E], k) -> (scores [Q, k], ids [Q, k])``."""

    def __init__(self, index, kind: str, nprobe: int):
        self.index, self.kind, self.nprobe = index, kind, nprobe
        if kind == "ivf":
            index.nprobe = nprobe

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return self.index.search(q, min(k, self.ntotal))

    @classmethod
    def build(cls, emb_TE: np.ndarray, config: IndexConfig = IndexConfig()) -> TextIndex:
        import faiss

        x = np.ascontiguousarray(emb_TE, dtype=np.float32)
        n, d = x.shape
        if n < config.ivf_threshold:
            index = faiss.IndexFlatIP(d)
            index.add(x)
            return cls(index, "flat", config.nprobe)
        nlist = config.nlist or max(16, int(math.sqrt(n)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(config.seed)
        train = x[np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))]  # faiss wants >= 39 per cell
        index.train(train)
        index.add(x)
        log.info("built IVF index: %d texts, %d cells, nprobe %d", n, nlist, config.nprobe)
        return cls(index, "ivf", config.nprobe)

    def save(self, path: Path) -> None:
        import faiss

        atomic_write_bytes(path, faiss.serialize_index(self.index).tobytes())

    @classmethod
    def load(cls, path: Path, config: IndexConfig = IndexConfig()) -> TextIndex:
        import faiss

        index = faiss.deserialize_index(np.frombuffer(Path(path).read_bytes(), dtype=np.uint8))
        kind = "ivf" if isinstance(index, faiss.IndexIVF) else "flat"
        return cls(index, kind, config.nprobe)


def load_or_build_index(emb_TE: np.ndarray, store: ArtifactStore, config: IndexConfig = IndexConfig()) -> TextIndex:
    """The index of these embeddings from the cache, or built and saved there."""

    digest = hashlib.sha256(np.ascontiguousarray(emb_TE, dtype=np.float32).tobytes()).hexdigest()
    key = content_key({"emb": digest, "ivf_threshold": config.ivf_threshold, "nlist": config.nlist, "seed": config.seed})
    path = store.find_file("faiss", key, ".index")
    if path is not None:
        return TextIndex.load(path, config)
    index = TextIndex.build(emb_TE, config)
    index.save(store.file_path("faiss", key, ".index"))
    store.publish_file("faiss", key, ".index")
    return index
