"""The content-addressed artifact store: the only place that builds cache paths.

An artifact is a directory ``<root>/<kind>/<key>/`` holding its files and a ``manifest.json`` that is written
last: a directory without a manifest is not complete. Work in progress lives in ``<key>.partial/`` (whose
finished files may be reused by a resumed run) and is renamed into place atomically when complete.

The root may be remote (:mod:`ccs_dist.artifacts.storage`): the directories above are then a node-local mirror, a
committed artifact is published to the root (manifest last) and one missing here is fetched from it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ccs_dist.artifacts.storage import local_dir, remote_root

MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def content_key(obj: Any, length: int = 24) -> str:
    """sha256 of the canonical JSON of ``obj``, shortened: the address of whatever it describes."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


@functools.cache
def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 minus the umask), read without changing the umask."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


@contextlib.contextmanager
def _atomic_file(path: Path):
    """A file handle whose content appears at ``path`` only once it is complete (fsync + rename).

    The file gets the same mode as any other file this process writes (the temporary file would be 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with _atomic_file(Path(path)) as f:
        f.write(data)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode("utf-8"))


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with _atomic_file(Path(path)) as f:
        np.save(f, np.ascontiguousarray(array))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _is_manifest(name: str) -> bool:
    return name == MANIFEST


class ArtifactStore:
    """Artifacts under ``root`` (a local path or a remote root's URI) addressed by (kind, key)."""

    def __init__(self, root: str | Path):
        self.root = local_dir(root)
        self.remote = remote_root(root)

    def final_dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def partial_dir(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.partial"

    def find(self, kind: str, key: str) -> Path | None:
        """The artifact's directory if it is complete (fetched from a remote root on a miss here), else None."""
        d = self.final_dir(kind, key)
        if (d / MANIFEST).is_file():
            return d
        if self.remote is not None and self.remote.fetch_dir(f"{kind}/{key}", d, _is_manifest):
            return d
        return None

    def begin(self, kind: str, key: str) -> Path:
        """The work-in-progress directory (created; kept from an interrupted run so it can resume)."""
        d = self.partial_dir(kind, key)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def commit(self, kind: str, key: str, manifest: dict[str, Any]) -> Path:
        """Write the manifest into the partial directory and move it into place atomically (and publish it)."""
        partial, final = self.partial_dir(kind, key), self.final_dir(kind, key)
        atomic_write_json(partial / MANIFEST, {**manifest, "kind": kind, "key": key})
        if final.exists():  # an incomplete leftover (no manifest) or a concurrent writer's identical result
            if (final / MANIFEST).is_file():
                shutil.rmtree(partial, ignore_errors=True)
                return final
            shutil.rmtree(final)
        os.replace(partial, final)
        if self.remote is not None:
            self.remote.publish_dir(final, f"{kind}/{key}", _is_manifest)
            self.remote.delete_dir(f"{kind}/{key}.partial")  # parts published by other workers, merged now
        return final

    def exists(self, kind: str, key: str) -> bool:
        """Whether the artifact is complete here or at the remote root (without fetching it)."""
        return (self.final_dir(kind, key) / MANIFEST).is_file() or \
            (self.remote is not None and self.remote.is_file(f"{kind}/{key}/{MANIFEST}"))

    def publish_partial(self, kind: str, key: str, is_record: Callable[[str], bool]) -> None:
        """Publish the finished files of a work folder (parts done apart, each complete once its record
        exists), records last, so a worker on another node can take them up; no-op for a local root."""
        if self.remote is not None and not self.remote.is_file(f"{kind}/{key}/{MANIFEST}"):  # else merged already
            self.remote.publish_dir(self.partial_dir(kind, key), f"{kind}/{key}.partial", is_record, skip_present=True,
                                    include=lambda name: not name.startswith("progress"))

    def fetch_partial(self, kind: str, key: str, is_record: Callable[[str], bool]) -> None:
        """The published parts of a work folder that this node lacks (see :meth:`publish_partial`)."""
        if self.remote is None:
            return
        fetched = [n for n in self.remote.fetch_dir(f"{kind}/{key}.partial", self.begin(kind, key), is_record, replace=False)
                   if is_record(n)]
        if fetched:
            log.info("%d part(s) of %s/%s done elsewhere fetched from %s", len(fetched), kind, key, self.remote.uri)

    def discard_partial(self, kind: str, key: str) -> None:
        """Remove a work folder here and at a remote root (its parts were merged into something else)."""
        shutil.rmtree(self.partial_dir(kind, key), ignore_errors=True)
        if self.remote is not None:
            self.remote.delete_dir(f"{kind}/{key}.partial")

    def file_path(self, kind: str, key: str, suffix: str) -> Path:
        """A single-file artifact ``<root>/<kind>/<key><suffix>`` (e.g. text embeddings as .npy)."""
        return self.root / kind / f"{key}{suffix}"

    def find_file(self, kind: str, key: str, suffix: str) -> Path | None:
        """The single-file artifact if it exists (fetched from a remote root on a miss here), else None."""
        path = self.file_path(kind, key, suffix)
        if path.is_file():
            return path
        if self.remote is not None and self.remote.is_file(f"{kind}/{path.name}"):
            self.remote.get(f"{kind}/{path.name}", path)
            return path
        return None

    def publish_file(self, kind: str, key: str, suffix: str) -> None:
        """After writing :meth:`file_path`: publish it to a remote root (no-op for a local one)."""
        if self.remote is not None:
            path = self.file_path(kind, key, suffix)
            self.remote.put(path, f"{kind}/{path.name}")


def safetensors_bytes(tensors: dict, metadata: dict[str, str] | None = None) -> bytes:
    """``safetensors.torch.save`` with its ``__metadata__`` written in key order: safetensors keeps the metadata in a
    hash map whose order changes from call to call, so the same tensors gave other bytes (and another sha256) about
    half the time with two keys. The rest of the header and the data are safetensors' own bytes."""
    from safetensors.torch import save  # heavy optional dependency (torch), only when writing weights

    data = save(tensors, metadata=metadata)
    if not metadata or len(metadata) < 2:
        return data
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > n:  # same keys in another order: never longer
        raise AssertionError(f"safetensors header grew from {n} to {len(text)} bytes when reordered")
    return data[:8] + text.ljust(n, b" ") + data[8 + n:]
