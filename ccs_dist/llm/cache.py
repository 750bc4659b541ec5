"""Content-addressed disk cache of LLM answers: diskcache (SQLite) holding JSON text, never pickle.

Key = sha256 of the canonical JSON of everything that determines an answer (endpoint host and path,
model, messages, generation parameters, response format, prompt-template version, ask number).
Several processes may share one directory: a request about to be sent is *claimed* with an atomic
``add`` of a lease entry; a process that finds a live claim waits for the answer instead of sending
the request again. A claim expires after its lease (the longest one request may take with all its
retries), so a crashed holder delays others by at most that long, and a duplicate request can only
happen when a holder outlives its lease.

A shared cache is untrusted input: answers live in the database only (never diskcache's file mode),
a row that is not JSON text in the database (pickle, file mode, bad JSON) is a *bad entry*, read as a
miss, reported and overwritten by the next answer, and no file outside the cache directory is ever
removed. A cache directory we cannot write to is read without coordination (its answers still serve;
new answers are not kept); a file that is not a cache is one error line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

import diskcache

from ccs_dist.core.errors import UserError

log = logging.getLogger(__name__)

_CLAIM_PREFIX = "claim:"
_NEVER_A_FILE = 2**62  # disk_min_file_size: every value stays in the database


class CacheCorrupt(UserError):
    pass


class BadEntry(Exception):
    """One row of the cache cannot be an answer we wrote (``str(e)`` says why)."""


class JSONOnlyDisk(diskcache.Disk):
    """A diskcache ``Disk`` that stores and loads only text held in the database: a pickled or file-mode
    row is a :class:`BadEntry`, never loaded, and a row naming a file outside the cache is never removed."""

    def put(self, key):
        if not isinstance(key, str):
            raise TypeError(f"LLM cache keys are str, got {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            return "bad-key:pickled"  # listing only: our lookups are by str key, so this row is never an answer
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if read or not isinstance(value, str):
            raise TypeError(f"LLM cache values are JSON text, got {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode, filename, value, read):
        if mode != diskcache.core.MODE_RAW or filename is not None:
            raise BadEntry(f"a {'pickled' if mode == diskcache.core.MODE_PICKLE else 'file-mode'} row (mode {mode})")
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path):
        root = Path(self._directory).resolve()
        path = (root / str(file_path)).resolve()
        if path == root or root not in path.parents:
            log.warning("the LLM cache at %s holds a row naming %s, outside the cache: not removed", root, file_path)
            return
        try:
            path.unlink()
        except OSError:
            pass


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


class _ReadOnlyRows:
    """The subset of ``diskcache.Cache`` we use, over a cache database we may not write: reads only."""

    def __init__(self, db: Path):
        self._db = db
        self._con = self._connect("mode=ro")
        try:
            self._con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()
        except sqlite3.OperationalError:  # WAL needs its -shm file; on a read-only directory read it as immutable
            self._con.close()
            self._con = self._connect("immutable=1")
            self._con.execute("SELECT 1 FROM Cache LIMIT 1").fetchall()

    def _connect(self, flag: str) -> sqlite3.Connection:
        return sqlite3.connect(f"{self._db.resolve().as_uri()}?{flag}", uri=True, check_same_thread=False)

    def get(self, key: str):
        row = self._con.execute(
            "SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1 AND (expire_time IS NULL OR expire_time > ?)",
            (key, time.time()),
        ).fetchone()
        if row is None:
            return None
        mode, filename, value = row
        if mode != diskcache.core.MODE_RAW or filename is not None:
            raise BadEntry(f"a {'pickled' if mode == diskcache.core.MODE_PICKLE else 'file-mode'} row (mode {mode})")
        return value

    def add(self, key, value, expire=None) -> bool:
        return True  # nothing to coordinate with: no one can write here

    def set(self, key, value, expire=None) -> bool:
        return False

    def delete(self, key) -> bool:
        return False

    def iterkeys(self):
        for (key,) in self._con.execute("SELECT key FROM Cache WHERE raw = 1 ORDER BY rowid"):
            yield key

    def close(self) -> None:
        self._con.close()


def _unwritable(e: BaseException) -> bool:
    msg = str(e).lower()
    return isinstance(e, PermissionError) or "readonly" in msg or "read-only" in msg or "unable to open" in msg


class AnswerCache:
    """JSON answers by request key, safe to share between processes (see module docstring).

    ``read_only`` is True when the directory cannot be written: answers are served, none is kept.
    ``bad_entries`` lists the keys of rows that were read as misses (see :class:`BadEntry`).
    """

    def __init__(self, directory: str | os.PathLike):
        path = Path(directory)
        self.directory = path
        self.read_only = False
        self.bad_entries: list[str] = []
        self._warned_unkept = False
        if path.exists() and not path.is_dir():
            raise UserError(f"the LLM cache directory {path} is a file: pass a directory as --cache-dir")
        db = path / "cache.db"
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._c = diskcache.Cache(str(path), disk=JSONOnlyDisk, timeout=60, eviction_policy="none",
                                      size_limit=2**40, disk_min_file_size=_NEVER_A_FILE)
        except sqlite3.DatabaseError as e:
            if not (_unwritable(e) and db.is_file()):
                raise CacheCorrupt(f"the LLM cache {db} is not a readable cache ({e}): move the directory aside "
                                   "(its answers cannot be read) or pass another --cache-dir") from None
            self._open_read_only(db)
        except OSError as e:
            if not (_unwritable(e) and db.is_file()):
                raise UserError(f"cannot open the LLM cache at {path} ({e.strerror or e}): pass a writable --cache-dir") from None
            self._open_read_only(db)
        except diskcache.Timeout:
            raise UserError(f"the LLM cache at {path} stayed locked for 60 s: another process holds it; retry, "
                            "or pass another --cache-dir") from None

    def _open_read_only(self, db: Path) -> None:
        try:
            self._c = _ReadOnlyRows(db)
        except sqlite3.DatabaseError as e:
            raise CacheCorrupt(f"the LLM cache {db} cannot be read ({e}): pass a readable --cache-dir") from None
        self.read_only = True
        log.warning("the LLM cache at %s is read-only: its answers are used, new answers are not kept", self.directory)

    def _guard(self, op, *args, **kwargs):
        try:
            return op(*args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise CacheCorrupt(f"the LLM cache at {self.directory} failed ({e}): move the directory aside or pass "
                               "another --cache-dir, then re-run") from None

    def _bad(self, key: str, why: str) -> None:
        if key not in self.bad_entries:
            self.bad_entries.append(key)
            log.warning("LLM cache entry %s is unusable (%s): asked again as a miss", key[:12], why)

    def get(self, key: str) -> dict | None:
        try:
            raw = self._guard(self._c.get, key)
        except BadEntry as e:
            self._bad(key, str(e))
            return None
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
        except (ValueError, TypeError) as e:
            self._bad(key, f"not JSON: {type(e).__name__}")
            return None
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            self._bad(key, "no answer text")
            return None
        return entry

    def set(self, key: str, answer: dict) -> None:
        if self.read_only:
            if not self._warned_unkept:
                self._warned_unkept = True
                log.warning("new LLM answers are not kept: the cache at %s is read-only", self.directory)
            return
        self._guard(self._c.set, key, canonical_json(answer))

    def claim(self, key: str, lease_s: float) -> bool:
        """Try to become the one process that sends ``key``; True if we hold the claim now."""
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "t": time.time()}
        return self._guard(self._c.add, _CLAIM_PREFIX + key, json.dumps(owner), expire=lease_s)

    def claimed(self, key: str) -> bool:
        """Whether a live process holds the claim. A claim whose owner on this host is gone (killed, say)
        is dropped at once, so a re-run after a crash does not wait out the lease; so is a claim we
        cannot read."""
        try:
            raw = self._guard(self._c.get, _CLAIM_PREFIX + key)
            owner = None if raw is None else json.loads(raw)
        except (BadEntry, ValueError, TypeError):
            owner = {}
        if owner is None:
            return False
        if not isinstance(owner, dict) or not owner or (owner.get("host") == socket.gethostname() and not _pid_alive(owner.get("pid"))):
            self._guard(self._c.delete, _CLAIM_PREFIX + key)
            log.info("dropped the claim of a dead process on request %s", key[:12])
            return False
        return True

    def release(self, key: str) -> None:
        self._guard(self._c.delete, _CLAIM_PREFIX + key)

    def answer_keys(self) -> list[str]:
        return [k for k in self._guard(lambda: list(self._c.iterkeys())) if not k.startswith((_CLAIM_PREFIX, "bad-key:"))]

    def __len__(self) -> int:
        return len(self.answer_keys())

    def close(self) -> None:
        self._c.close()
