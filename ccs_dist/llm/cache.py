"""Content-addressed disk cache of LLM answers: diskcache (SQLite) holding JSON text, never pickle.

Key = sha256 of the canonical JSON of everything that determines an answer (endpoint host and path,
model, messages, generation parameters, response format, prompt-template version, ask number).
Several processes may share one directory: a request about to be sent is *claimed* with an atomic
``add`` of a lease entry; a process that finds a live claim waits for the answer instead of sending
the request again. A claim expires after its lease (the longest one request may take with all its
retries), so a crashed holder delays others by at most that long, and a duplicate request can only
happen when a holder outlives its lease.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

import diskcache

from ccs_dist.errors import UserError

log = logging.getLogger(__name__)

_CLAIM_PREFIX = "claim:"


class CacheCorrupt(UserError):
    pass


class JSONOnlyDisk(diskcache.Disk):
    """A diskcache ``Disk`` that stores and loads only text: a pickled row is refused, never loaded."""

    def put(self, key):
        if not isinstance(key, str):
            raise TypeError(f"LLM cache keys are str, got {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise CacheCorrupt("the LLM cache holds a pickled key: delete the cache directory, it was not written by ccs_dist")
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if read or not isinstance(value, str):
            raise TypeError(f"LLM cache values are JSON text, got {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            raise CacheCorrupt("the LLM cache holds a pickled value: delete the cache directory, it was not written by ccs_dist")
        return super().fetch(mode, filename, value, read)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_key(payload: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON of ``payload`` (which must hold no secret)."""
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AnswerCache:
    """JSON answers by request key, safe to share between processes (see module docstring)."""

    def __init__(self, directory: str | os.PathLike):
        path = Path(directory)
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._c = diskcache.Cache(str(path), disk=JSONOnlyDisk, timeout=60, eviction_policy="none", size_limit=2**40)
        except (OSError, diskcache.Timeout) as e:
            raise UserError(f"cannot open the LLM cache at {path} ({e}): pass a writable --cache-dir") from e
        self.directory = path

    def get(self, key: str) -> dict | None:
        raw = self._c.get(key)
        return None if raw is None else json.loads(raw)

    def set(self, key: str, answer: dict) -> None:
        self._c.set(key, canonical_json(answer))

    def claim(self, key: str, lease_s: float) -> bool:
        """Try to become the one process that sends ``key``; True if we hold the claim now."""
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "t": time.time()}
        return self._c.add(_CLAIM_PREFIX + key, json.dumps(owner), expire=lease_s)

    def claimed(self, key: str) -> bool:
        """Whether a live process holds the claim. A claim whose owner on this host is gone (killed, say)
        is dropped at once, so a re-run after a crash does not wait out the lease."""
        raw = self._c.get(_CLAIM_PREFIX + key)
        if raw is None:
            return False
        owner = json.loads(raw)
        if owner.get("host") == socket.gethostname() and not _pid_alive(owner.get("pid")):
            self._c.delete(_CLAIM_PREFIX + key)
            log.info("dropped the claim of a dead process (pid %s) on request %s", owner.get("pid"), key[:12])
            return False
        return True

    def release(self, key: str) -> None:
        self._c.delete(_CLAIM_PREFIX + key)

    def answer_keys(self) -> list[str]:
        return [k for k in self._c.iterkeys() if not k.startswith(_CLAIM_PREFIX)]

    def __len__(self) -> int:
        return len(self.answer_keys())

    def close(self) -> None:
        self._c.close()
