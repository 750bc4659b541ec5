"""Async token buckets for requests/min and tokens/min, tightened by ``x-ratelimit-*`` headers.

A 429 pauses every caller until its ``Retry-After`` has passed (as curator does), so one refusal does
not turn into a volley of them.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_EPS_S = 1e-6


def parse_duration(text: str) -> float | None:
    """``'6m0s'``, ``'1.5s'``, ``'20ms'`` or a bare number of seconds -> seconds (None if unparseable)."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


class TokenBucket:
    """``rate`` units per second, holding at most ``capacity``; callers may go into debt by ``take``.

    Starts full. ``acquire(n)`` waits until ``n`` units (capped at capacity) are there and takes them.
    """

    def __init__(self, rate: float, capacity: float):
        if rate <= 0 or capacity <= 0:
            raise ValueError(f"token bucket needs rate > 0 and capacity > 0, got {rate}, {capacity}")
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._level = float(capacity)
        self._t = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._level = self._level_at(now)
        self._t = now

    def _level_at(self, t: float) -> float:
        return min(self.capacity, self._level + max(0.0, t - self._t) * self.rate)

    def wait_time(self, n: float, at: float | None = None) -> float:
        """Seconds after ``at`` (default: now) until ``n`` units are available (0 when they are then)."""
        need = min(n, self.capacity) - self._level_at(time.monotonic() if at is None else at)
        return max(0.0, need / self.rate)

    def take(self, n: float, due: float | None = None) -> None:
        """Take ``n`` units. ``due``: when a waiter was scheduled to get them; a waiter woken later (timer
        granularity, a busy event loop) keeps what came in since ``due``, which a full bucket would drop, so
        late wake-ups do not lower the rate. That credit never leaves more than ``capacity`` after the take."""
        now = time.monotonic()
        if due is not None and self._t <= due < now:
            level = min(self._level_at(due) + (now - due) * self.rate, self.capacity + n)
        else:
            level = self._level_at(now)
        self._level, self._t = level - n, now

    def cap_level(self, level: float) -> None:
        """Never hold more than ``level`` units now (the server says that is all that remains)."""
        self._refill()
        self._level = min(self._level, level)

    def set_rate(self, rate: float, capacity: float) -> None:
        self._refill()
        self.rate, self.capacity = float(rate), float(capacity)
        self._level = min(self._level, self.capacity)


class RateLimiter:
    """Requests/min and tokens/min buckets shared by all requests to one endpoint.

    ``acquire(tokens)`` is FIFO (one lock) so a large request is not starved by small ones.
    """

    def __init__(self, rpm: float, tpm: float, burst_s: float = 0.1):
        self.burst_s = burst_s
        self.rpm, self.tpm = float(rpm), float(tpm)
        self.requests = TokenBucket(rpm / 60.0, max(1.0, rpm / 60.0 * burst_s))
        self.tokens = TokenBucket(tpm / 60.0, max(1.0, tpm / 60.0 * max(burst_s, 1.0)))
        self._lock = asyncio.Lock()
        self._paused_until = 0.0
        self.n_pauses = 0

    async def acquire(self, tokens: float) -> None:
        async with self._lock:
            now = time.monotonic()
            while True:  # after a sleep, check as of when it should have ended (``now``): it may end late
                wait = max(self._paused_until - now, self.requests.wait_time(1.0, now), self.tokens.wait_time(tokens, now))
                if wait <= _EPS_S:  # float residue: ``now += wait`` would not move ``now``
                    break
                now += wait
                await asyncio.sleep(wait)
                now = min(now, time.monotonic())
            self.requests.take(1.0, due=now)
            self.tokens.take(tokens, due=now)

    def settle(self, estimated: float, actual: float) -> None:
        """Correct the token bucket once the real usage of a request is known."""
        self.tokens.take(actual - estimated)

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` (after a 429); requests in flight are not affected."""
        until = time.monotonic() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            self.n_pauses += 1
            log.info("rate limited by the server: pausing all requests for %.2f s", seconds)

    def observe_headers(self, headers: Mapping[str, str]) -> None:
        """Tighten to the server's ``x-ratelimit-limit-*`` and ``-remaining-*`` when it sends them."""
        h = {k.lower(): v for k, v in headers.items()}
        for kind, bucket, per_min_attr in (("requests", self.requests, "rpm"), ("tokens", self.tokens, "tpm")):
            limit = _as_float(h.get(f"x-ratelimit-limit-{kind}"))
            if limit is not None and limit < getattr(self, per_min_attr):
                log.info("server limit %s/min for %s is below ours (%s): adopting it", limit, kind, getattr(self, per_min_attr))
                setattr(self, per_min_attr, limit)
                cap = max(1.0, limit / 60.0 * (self.burst_s if kind == "requests" else max(self.burst_s, 1.0)))
                bucket.set_rate(limit / 60.0, cap)
            remaining = _as_float(h.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is not None:
                bucket.cap_level(remaining)


def _as_float(v: str | None) -> float | None:
    if v is None:
        return None
    try:
        return float(v)
    except ValueError:
        return None
