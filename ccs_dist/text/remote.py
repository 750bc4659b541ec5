"""Description pools published by others, fetched on first use into the cache and checked by sha256.

The papers' pool (``image_descriptions_general``: 3,497 sentences by the TextSpan authors, MIT licence) is not
copied into this project; like torchvision's datasets, it is downloaded once from its public source and
verified against a pinned sha256 before anything reads it. A copy elsewhere is used by passing its path.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ccs_dist.core.errors import UserError
from ccs_dist.artifacts.storage import local_dir
from ccs_dist.artifacts.store import atomic_write_bytes

log = logging.getLogger(__name__)

MAX_BYTES = 64 << 20  # a description pool is text: anything larger is not what we asked for


@dataclass(frozen=True)
class RemotePool:
    name: str
    url: str
    sha256: str
    credit: str


REMOTE_POOLS: dict[str, RemotePool] = {
    pool.name: pool
    for pool in (
        RemotePool(
            name="image_descriptions_general",
            url="https://raw.githubusercontent.com/yossigandelsman/clip_text_span/main/text_descriptions/"
            "image_descriptions_general.txt",
            sha256="39c6bf3e788684d9e0e8afa902c13aae1ee8eafefdbab94ba923fd05b9038630",
            credit="Gandelsman, Efros, Steinhardt (ICLR 2024), github.com/yossigandelsman/clip_text_span, MIT licence",
        ),
    )
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_path(pool: RemotePool, cache_dir: str | Path) -> Path:
    return local_dir(cache_dir) / "pools" / f"{pool.name}-{pool.sha256[:16]}.txt"


def _download(url: str, timeout_s: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "ccs_dist"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (https or a test's loopback)
        data = response.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise UserError(f"{url} sent more than {MAX_BYTES >> 20} MiB: not a description pool; pass pool: PATH instead")
    return data


def fetch_pool(pool: RemotePool, cache_dir: str | Path, url: str | None = None, timeout_s: float = 60.0) -> Path:
    """The verified local copy of ``pool``: from the cache, else downloaded (from ``url``, default its source)."""
    target = cached_path(pool, cache_dir)
    if target.is_file() and _sha256(target.read_bytes()) == pool.sha256:
        return target
    source = url or pool.url
    log.info("downloading description pool %s from %s (once; kept in %s)", pool.name, source, target.parent)
    try:
        data = _download(source, timeout_s)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise UserError(
            f"cannot download description pool {pool.name} from {source} ({reason}): connect this machine to the "
            f"internet once, or download the file yourself and pass its path as the pool"
        ) from None
    got = _sha256(data)
    if got != pool.sha256:
        raise UserError(
            f"description pool {pool.name} from {source} has sha256 {got[:16]}..., expected {pool.sha256[:16]}...: "
            "the download is not the published file; pass the path of a verified copy as the pool"
        )
    atomic_write_bytes(target, data)
    return target
