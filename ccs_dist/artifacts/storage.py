"""Where artifacts and run outputs live: one configured root, a local path or a remote store's URI.

A root is a local path (a shared filesystem every node mounts is one) or a URI that pyarrow.fs opens
(``s3://bucket/prefix``, ``gs://``, ``hdfs://``; any fsspec protocol when fsspec is installed). Code always
reads and writes a local directory, :func:`local_dir`: the root itself, or for a remote root a node-local
mirror under ``$CCS_DIST_LOCAL_CACHE`` (default ``~/.cache/ccs_dist``). A finished directory is published
to the remote root with its files first and its marker (manifest) last, so a reader that finds the marker
finds every file; a miss in the mirror fetches it. An S3-compatible store's endpoint comes from
``?endpoint_override=HOST:PORT&scheme=http`` or ``AWS_ENDPOINT_URL``. Credentials come only from the
environment (``AWS_*`` variables, ``~/.aws``, the instance's role): a URI carrying them is refused.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ccs_dist.core.errors import UserError
from ccs_dist.core.errors import check_dir_arg

LOCAL_CACHE_ENV = "CCS_DIST_LOCAL_CACHE"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SECRET_PARAM = re.compile(r"secret|access|token|passw|credential|signature|session|key", re.IGNORECASE)
_CHUNK = 8 << 20


def is_remote(root: str | Path) -> bool:
    """A URI other than ``file://`` (a local path, or a ``file://`` URI, is used as the directory itself)."""
    m = _SCHEME.match(str(root))
    return bool(m) and m.group(1).lower() != "file"


def refuse_credentials(name: str, root: str | Path) -> None:
    """A :class:`UserError` when a root URI embeds credentials (user:password@ or a secret query value).

    The message names neither the secret nor the URI that carries it."""
    if not _SCHEME.match(str(root)):
        return
    parts = urlsplit(str(root))
    if parts.username or parts.password or any(_SECRET_PARAM.search(k) for k, _ in parse_qsl(parts.query)):
        raise UserError(f"{name}: the URI carries credentials; remove them and give them in the environment "
                        "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws)")


def display(root: str | Path) -> str:
    """The root as logs and manifests show it (a URI without its query)."""
    return str(root).split("?", 1)[0] if is_remote(root) else str(root)


def join(root: str | Path, *parts: str) -> str:
    """``root`` with ``parts`` appended (a URI's query stays at the end)."""
    text = str(root)
    if not is_remote(text):
        return str(Path(_file_path(text)).joinpath(*parts))
    base, sep, query = text.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + (sep + query)


def absolute(root: str | Path) -> str:
    """A local root made absolute (``~`` expanded); a remote one unchanged."""
    return str(root) if is_remote(root) else str(Path(_file_path(str(root))).expanduser().absolute())


def local_dir(root: str | Path) -> Path:
    """The local directory that stands for ``root`` in this process (a node-local mirror for a remote root)."""
    if not is_remote(root):
        return Path(_file_path(str(root)))
    parts = urlsplit(str(root))
    base = Path(os.environ.get(LOCAL_CACHE_ENV) or "~/.cache/ccs_dist").expanduser()
    return base.joinpath(parts.scheme, parts.hostname or "_", *[p for p in parts.path.split("/") if p not in ("", ".", "..")])


def _file_path(text: str) -> str:
    return urlsplit(text).path if text.lower().startswith("file://") else text


# --------------------------------------------------------------------------------------------------------
# A remote root


@dataclass(frozen=True)
class RemoteRoot:
    """A remote store's filesystem and the prefix of one root in it (paths below are ``/``-separated)."""

    fs: Any  # pyarrow.fs.FileSystem
    base: str
    uri: str  # for messages: without the query

    def path(self, rel: str) -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def is_file(self, rel: str) -> bool:
        from pyarrow.fs import FileType

        return self.fs.get_file_info(self.path(rel)).type == FileType.File

    def files(self, rel: str) -> dict[str, int]:
        """Every file below ``rel`` (relative name -> size); empty when there is none."""
        from pyarrow.fs import FileSelector, FileType

        top = self.path(rel).rstrip("/")
        infos = self.fs.get_file_info(FileSelector(top, recursive=True, allow_not_found=True))
        return {i.path[len(top) + 1:]: i.size for i in infos if i.type == FileType.File}

    def put(self, local: Path, rel: str) -> None:
        """Upload one file (an object appears only once its upload completes)."""
        with open(local, "rb") as src, self.fs.open_output_stream(self.path(rel)) as out:
            shutil.copyfileobj(src, out, _CHUNK)

    def get(self, rel: str, local: Path) -> None:
        """Download one file; it appears at ``local`` only once complete."""
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, self.fs.open_input_stream(self.path(rel)) as src:
                shutil.copyfileobj(src, out, _CHUNK)
            os.replace(tmp, local)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, rel: str) -> None:
        from pyarrow.fs import FileType

        if self.fs.get_file_info(self.path(rel)).type == FileType.File:
            self.fs.delete_file(self.path(rel))

    def delete_dir(self, rel: str) -> None:
        """Remove everything below ``rel`` (nothing when there is none)."""
        if self.files(rel):
            self.fs.delete_dir(self.path(rel))

    def publish_dir(self, local: Path, rel: str, is_marker: Callable[[str], bool], *,
                    include: Callable[[str], bool] = lambda name: True, skip_present: bool = False) -> None:
        """Upload the files of ``local`` to ``rel``, the marker files last. ``skip_present``: leave out files
        already there with the same size (shards of a work folder published one at a time)."""
        present = self.files(rel) if skip_present else {}
        names = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
        names = [n for n in names if include(n) and not Path(n).name.startswith(".")
                 and present.get(n) != (local / n).stat().st_size]
        for name in sorted(names, key=is_marker):  # False (objects) before True (markers)
            self.put(local / name, _child(rel, name))

    def fetch_dir(self, rel: str, local: Path, is_marker: Callable[[str], bool], *, replace: bool = True) -> list[str]:
        """Download ``rel`` into ``local`` when a marker is there; -> the files fetched (none: no marker).
        ``replace``: into a fresh folder moved into place at the end (a complete artifact); else only the
        files ``local`` lacks, markers last (shards of a work folder)."""
        remote = self.files(rel)
        if not any(is_marker(n) for n in remote):
            return []
        if not replace:
            names = sorted((n for n in remote if not (local / n).is_file()), key=is_marker)
            for name in names:
                self.get(_child(rel, name), local / name)
            return names
        local.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=local.parent, prefix=f".{local.name}.fetch-"))
        try:
            for name in sorted(remote, key=is_marker):
                self.get(_child(rel, name), staging / name)
            if local.exists():
                shutil.rmtree(local)
            os.replace(staging, local)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return sorted(remote)


def _child(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def remote_root(root: str | Path) -> RemoteRoot | None:
    """The remote store behind ``root``; None for a local root. Opened once per process."""
    return _open(str(root)) if is_remote(root) else None


@functools.lru_cache(maxsize=32)
def _open(uri: str) -> RemoteRoot:
    refuse_credentials("storage root", uri)
    try:
        fs, path = _filesystem(uri)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 (pyarrow raises ArrowInvalid, OSError, ValueError ...)
        raise UserError(f"storage root {display(uri)}: cannot open it ({_first_line(e)}): use s3://BUCKET/PREFIX, "
                        "gs://BUCKET/PREFIX, another pyarrow.fs or fsspec URI, or a local path") from None
    return RemoteRoot(fs, path.rstrip("/"), display(uri))


def _filesystem(uri: str):
    import pyarrow.fs as pafs

    scheme = uri.split("://", 1)[0].lower()
    if scheme == "s3" and "endpoint_override" not in uri:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:  # pyarrow reads it too, but not its scheme: give both explicitly
            e = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
            uri += ("&" if "?" in uri else "?") + f"endpoint_override={e.netloc}&scheme={e.scheme}"
    try:
        return pafs.FileSystem.from_uri(uri)
    except Exception as e:  # noqa: BLE001
        if "nrecognized filesystem" not in str(e):
            raise
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise UserError(f"storage root {display(uri)}: pyarrow does not know {scheme}://, and fsspec is not installed "
                        "(pip install fsspec and the package for that protocol)") from None
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    fs, path = url_to_fs(uri)
    return PyFileSystem(FSSpecHandler(fs)), path


def check_root(name: str, root: str | Path) -> None:
    """Up front, before any work: a local root is a directory (or can be made one); a remote one opens and
    answers. Anything else is a one-line :class:`UserError` naming ``name``."""

    refuse_credentials(name, root)
    if not is_remote(root):
        check_dir_arg(name, local_dir(root))
        return
    from pyarrow.fs import FileType

    remote = remote_root(root)
    bucketed = remote.fs.type_name in ("s3", "gcs")
    top = remote.base.split("/", 1)[0] if bucketed else remote.base  # an object store's bucket must exist
    try:
        found = remote.fs.get_file_info(top).type != FileType.NotFound or not bucketed
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{name} {remote.uri}: the store does not answer ({_first_line(e)}): check the URI, the endpoint "
                        "(AWS_ENDPOINT_URL) and the credentials in the environment") from None
    if not found:
        raise UserError(f"{name} {remote.uri}: {top} does not exist in that store: create the bucket (or fix the URI)")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]
