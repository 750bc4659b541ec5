"""One OpenAI-compatible endpoint behind a cache, a rate limiter, a concurrency bound and retries.

The only module that talks HTTP (through the ``openai`` SDK's async client). The API key is read from
the environment variable the endpoint's config names, handed to the SDK for that endpoint only and kept
nowhere else: it is in no cache key, log line, table or error message. Base URLs are shown redacted
(:mod:`ccs_dist.llm.urls`). ``timeout_s`` bounds a whole attempt (connect to last byte), not each read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

from ccs_dist.core.errors import UserError
from ccs_dist.llm.cache import AnswerCache, request_key
from ccs_dist.llm.config import CacheMode, EndpointConfig
from ccs_dist.llm.content import Content, estimated_tokens, first_token_probs, key_content, wire_content
from ccs_dist.llm.ratelimit import RateLimiter, parse_duration
from ccs_dist.llm.urls import is_loopback, redact_url, scrub, url_secrets

log = logging.getLogger(__name__)

_POLL_S = 0.05
# rejected requests (400/413/422) in a row with no answer at all: the settings, not one request, are wrong
_REJECTS_BEFORE_FATAL = 5
_PER_REQUEST_CODES = (400, 413, 422)


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion. ``template`` (``name@version``) and ``ask`` (0 for the first ask of a
    question, n for its n-th re-ask after an unusable answer) are part of the cache key, not sent.
    ``top_logprobs`` > 0 asks for the first answer token's log-probabilities (dropped, with one log line, by
    an endpoint that refuses them)."""

    messages: tuple[tuple[str, Content], ...]  # (role, text or parts: see ccs_dist.llm.content)
    template: str
    max_tokens: int = 16
    json_schema: dict | None = None  # sent as response_format when the endpoint supports it
    ask: int = 0
    temperature: float = 0.0
    top_logprobs: int = 0


@dataclass(frozen=True)
class ChatAnswer:
    text: str
    structured: bool  # the request was sent with a JSON schema
    cached: bool
    token_probs: tuple[tuple[str, float], ...] | None = None  # first token's alternatives, when asked and returned


@dataclass
class PoolStats:
    """Counters of one stage run (summed over endpoints by :meth:`merge`)."""

    hits: int = 0  # answers read from the cache (also those another process fetched while we waited)
    misses: int = 0  # questions sent to the network
    requests: int = 0  # HTTP requests, retries included
    rate_limited: int = 0  # 429 answers received
    retries: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cost_avoided_usd: float = 0.0  # what the cache hits cost when they were first asked

    def merge(self, other: PoolStats) -> PoolStats:
        return PoolStats(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class EndpointUnavailable(UserError):
    pass


class RequestRejected(Exception):
    """The endpoint refused this one request for good (e.g. 400 context_length_exceeded): the head it
    belongs to is flagged, the other heads are scored. ``str(e)`` says who refused it and why."""


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class _JsonUnsupported(Exception):
    pass


class _LogprobsUnsupported(Exception):
    pass


def read_api_key(env_name: str, required: bool = True) -> str | None:
    """The key's value from ``env_name``; a UserError when required and unset."""
    value = os.environ.get(env_name)
    if not value and required:
        raise UserError(f"no API key: set the environment variable {env_name} (or name another one with --api-key-env, "
                        "or MODEL@URL#ENV in --judges)")
    return value or None


class EndpointClient:
    """Ask one endpoint, at most once per distinct request across every process sharing ``cache``."""

    def __init__(self, cfg: EndpointConfig, cache: AnswerCache | None, cache_mode: CacheMode = "use"):
        self.cfg = cfg
        self.name = cfg.name
        self.cache = None if cache_mode == "bypass" else cache
        self.cache_mode = cache_mode
        self.stats = PoolStats()
        self.limiter = RateLimiter(cfg.rpm, cfg.tpm, cfg.burst_s)
        self._sem = asyncio.Semaphore(cfg.max_concurrency)
        self._inflight: dict[str, asyncio.Future] = {}
        self._refreshed: set[str] = set()
        self._fatal: UserError | None = None
        self._json_ok: bool | None = {"on": True, "off": False}.get(cfg.json_mode)
        self._logprobs_ok = True
        self.url = redact_url(cfg.base_url)  # what messages may show
        self._url_secrets = url_secrets(cfg.base_url)  # scrubbed from server messages, which may echo the URL
        self._answered = 0
        self._rejected = 0
        try:
            parts = urlsplit(cfg.base_url)
        except ValueError:
            parts = urlsplit("")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UserError(f"base URL {self.url!r} is not an http(s) URL: pass e.g. --base-url http://127.0.0.1:8000/v1")
        # host[:port]/path: userinfo never enters the key (unchanged for URLs without it, so old caches still hit)
        self._endpoint = parts.netloc.rpartition("@")[2] + parts.path.rstrip("/")
        key = read_api_key(cfg.api_key_env) if cfg.api_key_env else None
        # no key: the SDK insists on one, so it gets a placeholder and the Authorization header is dropped
        self._headers = {} if key else {"Authorization": openai.Omit()}
        if parts.scheme == "http" and not is_loopback(cfg.base_url):
            log.warning("%s: plain http to a non-loopback host: %s travel unencrypted; use https",
                        self.name, "the API key and the prompts" if key else "the prompts")
        self._client = openai.AsyncOpenAI(
            api_key=key or "no-key",
            base_url=cfg.base_url,
            timeout=cfg.timeout_s,
            max_retries=0,  # tenacity retries, so that 429 pauses and counts are ours
        )
        # the longest one claimed request may take: a dead holder delays others by at most this
        self._lease_s = cfg.max_attempts * (cfg.timeout_s + cfg.backoff_max_s)

    async def aclose(self) -> None:
        await self._client.close()

    # -- cache keys -------------------------------------------------------------------------------

    def _key(self, req: ChatRequest, structured: bool) -> str:
        params: dict[str, Any] = {"temperature": req.temperature, "max_tokens": req.max_tokens}
        if req.top_logprobs:  # only then: the keys of every earlier request stay as they were
            params["top_logprobs"] = req.top_logprobs
        return request_key(
            {
                "endpoint": self._endpoint,
                "model": self.cfg.model,
                "messages": [[role, key_content(c)] for role, c in req.messages],
                "params": params,
                "response_format": _response_format(req.json_schema) if structured else None,
                "template": req.template,
                "ask": req.ask,
            }
        )

    def _price(self, t_in: int, t_out: int) -> float:
        return (t_in * self.cfg.price_in_per_mtok + t_out * self.cfg.price_out_per_mtok) / 1e6

    def _hit(self, entry: dict, structured: bool) -> ChatAnswer:
        """Count a cache hit (and what it would have cost) and turn the entry into an answer."""
        self.stats.hits += 1
        self.stats.cost_avoided_usd += self._price(entry.get("tokens_in", 0), entry.get("tokens_out", 0))
        probs = entry.get("token_probs")
        return ChatAnswer(entry["text"], structured, cached=True,
                          token_probs=tuple((str(t), float(p)) for t, p in probs) if isinstance(probs, list) else None)

    def _lookup(self, req: ChatRequest) -> ChatAnswer | None:
        if self.cache is None:
            return None
        variants = [True, False] if req.json_schema is not None and self._json_ok is not False else [False]
        for structured in variants:
            key = self._key(req, structured)
            if self.cache_mode == "refresh" and key not in self._refreshed:
                continue  # refresh: ask once again in this run, then reuse that answer
            hit = self.cache.get(key)
            if hit is not None:
                return self._hit(hit, structured)
        return None

    # -- asking -----------------------------------------------------------------------------------

    async def ask(self, req: ChatRequest) -> ChatAnswer:
        """The endpoint's answer to ``req``: from the cache, from another process's or task's
        in-flight request, or sent now (with retries) and cached."""
        if req.top_logprobs and not self._logprobs_ok:
            req = dataclasses.replace(req, top_logprobs=0)
        hit = self._lookup(req)
        if hit is not None:
            return hit
        structured = req.json_schema is not None and self._json_ok is not False
        key = self._key(req, structured)
        if key in self._inflight:  # the same question asked twice in this process
            answer = await asyncio.shield(self._inflight[key])
            self.stats.hits += 1
            return dataclasses.replace(answer, cached=True)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            answer = await self._ask_claimed(req, key, structured)
            fut.set_result(answer)
            return answer
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: waiters get it, nobody else must
            raise
        finally:
            del self._inflight[key]

    async def _ask_claimed(self, req: ChatRequest, key: str, structured: bool) -> ChatAnswer:
        if self.cache is None or self.cache_mode == "refresh":
            return await self._fetch(req, key, structured)
        while True:
            if self.cache.claim(key, self._lease_s):
                try:
                    hit = self.cache.get(key)  # answered between our lookup and our claim
                    if hit is not None:
                        return self._hit(hit, structured)
                    return await self._fetch(req, key, structured)
                finally:
                    self.cache.release(key)
            # another process is asking this very question: wait for its answer or its claim to lapse
            while self.cache.claimed(key):
                await asyncio.sleep(_POLL_S)
            hit = self.cache.get(key)
            if hit is not None:
                return self._hit(hit, structured)

    async def _fetch(self, req: ChatRequest, key: str, structured: bool) -> ChatAnswer:
        self.stats.misses += 1
        try:
            text, t_in, t_out, probs = await self._send_with_retries(req, structured)
        except _LogprobsUnsupported:
            log.info("%s does not return logprobs: its answers are read without them", self.name)
            self._logprobs_ok = False
            self.stats.misses -= 1
            return await self.ask(req)
        except _JsonUnsupported:
            log.info("%s does not accept response_format json_schema: using plain answers and a strict parser", self.name)
            self._json_ok = False
            self.stats.misses -= 1
            return await self.ask(req)
        if structured and self._json_ok is None:
            self._json_ok = True
        if self.cache is not None:
            entry = {"text": text, "model": self.cfg.model, "template": req.template, "tokens_in": t_in, "tokens_out": t_out}
            if probs is not None:
                entry["token_probs"] = [list(tp) for tp in probs]
            self.cache.set(key, entry)
            self._refreshed.add(key)
        return ChatAnswer(text, structured, cached=False, token_probs=probs)

    async def _send_with_retries(self, req: ChatRequest, structured: bool) -> tuple[str, int, int, tuple | None]:
        last: list[str] = []
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.cfg.max_attempts),
                wait=self._wait,
                retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        self.stats.retries += 1
                    try:
                        return await self._send_once(req, structured)
                    except _Retryable as e:
                        last.append(str(e))
                        log.debug("%s: attempt %d failed: %s", self.name, attempt.retry_state.attempt_number, e)
                        raise
        except _Retryable as e:
            raise EndpointUnavailable(
                f"{self.name}: no usable answer after {self.cfg.max_attempts} attempts of at most {self.cfg.timeout_s:g} s "
                f"(last: {e}): check --base-url "
                "and that the server is up; every answer obtained so far is cached, re-run the same command to resume"
            ) from None
        raise AssertionError("unreachable")

    def _wait(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return exc.retry_after + random.uniform(0, 0.1 * max(exc.retry_after, 0.1))
        cap = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2 ** (retry_state.attempt_number - 1))
        return random.uniform(cap / 2, cap)  # exponential backoff with jitter

    async def _send_once(self, req: ChatRequest, structured: bool) -> tuple[str, int, int, tuple | None]:
        est_tokens = sum(estimated_tokens(c) for _, c in req.messages) + req.max_tokens
        kwargs: dict[str, Any] = dict(
            model=self.cfg.model,
            messages=[{"role": r, "content": wire_content(c)} for r, c in req.messages],
            temperature=req.temperature,
            max_tokens=req.max_tokens,
        )
        if req.top_logprobs:
            kwargs.update(logprobs=True, top_logprobs=req.top_logprobs)
        if structured:
            kwargs["response_format"] = _response_format(req.json_schema)
        if self._headers:
            kwargs["extra_headers"] = self._headers
        async with self._sem:
            if self._fatal is not None:  # a 4xx already doomed the stage: send nothing more
                raise UserError(str(self._fatal))
            await self.limiter.acquire(est_tokens)
            self.stats.requests += 1
            try:
                # the whole attempt, connect to last byte: a server that trickles bytes cannot hold it longer
                raw = await asyncio.wait_for(self._client.chat.completions.with_raw_response.create(**kwargs),
                                             self.cfg.timeout_s)
            except asyncio.TimeoutError:
                raise _Retryable(f"no complete answer within {self.cfg.timeout_s:g} s") from None
            except openai.RateLimitError as e:
                self.stats.rate_limited += 1
                wait = _retry_after(e.response.headers) or 1.0
                self.limiter.pause(wait)
                raise _Retryable(f"429 rate limited (retry after {wait:.2f} s)", retry_after=wait) from None
            except openai.APITimeoutError:
                raise _Retryable(f"no answer within {self.cfg.timeout_s} s") from None
            except openai.APIConnectionError as e:
                raise _Retryable(f"cannot connect to {self.url} ({_cause(e)})") from None
            except openai.APIStatusError as e:
                try:
                    self._raise_status(e, structured, bool(req.top_logprobs))
                except UserError as fatal:
                    self._fatal = fatal
                    raise
            self.limiter.observe_headers(raw.headers)
            body = raw.text
        text, t_in, t_out, probs = _parse_completion(body)
        self._answered += 1
        t_in = t_in if t_in is not None else int(est_tokens - req.max_tokens)
        t_out = t_out if t_out is not None else max(1, len(text) // 4)
        self.limiter.settle(est_tokens, t_in + t_out)
        self.stats.tokens_in += t_in
        self.stats.tokens_out += t_out
        self.stats.cost_usd += self._price(t_in, t_out)
        return text, t_in, t_out, probs

    def _raise_status(self, e: openai.APIStatusError, structured: bool, logprobs: bool = False):
        code = e.status_code
        msg = scrub(_server_message(e), self._url_secrets)
        if code >= 500 or code in (408, 409):
            raise _Retryable(f"server error {code}: {msg}") from None
        if code == 401:
            where = f"the environment variable {self.cfg.api_key_env}" if self.cfg.api_key_env else "MODEL@URL#ENV (none was sent)"
            raise UserError(f"{self.name} rejected the API key (401: {msg}): check the key in {where}") from None
        if code == 403:
            raise UserError(f"{self.name} refused access (403: {msg}): the key in {self.cfg.api_key_env} lacks permission for model {self.cfg.model}") from None
        if code == 404:
            raise UserError(f"model {self.cfg.model!r} is unknown at {self.url} (404: {msg}): pass a model the endpoint serves (see GET {self.url.rstrip('/')}/models)") from None
        if code == 400 and structured and self.cfg.json_mode == "auto" and "response_format" in msg:
            raise _JsonUnsupported() from None
        if code == 400 and logprobs and "logprobs" in msg:
            raise _LogprobsUnsupported() from None
        if code in _PER_REQUEST_CODES:
            self._rejected += 1
            if self._answered or self._rejected < _REJECTS_BEFORE_FATAL:
                raise RequestRejected(f"{self.name} rejected the request ({code}: {msg})") from None
            raise UserError(f"{self.name} rejected the first {self._rejected} requests and answered none (last {code}: {msg}): "
                            "check the model name and generation settings") from None
        raise UserError(f"{self.name} rejected the request ({code}: {msg}): check the model name and generation settings") from None


def _response_format(schema: dict | None) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": schema}}


def _retry_after(headers) -> float | None:
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        v = headers.get(name)
        if v is not None:
            try:
                return max(0.0, float(v) * scale)
            except ValueError:
                d = parse_duration(v)
                if d is not None:
                    return d
    return None


def _cause(e: BaseException) -> str:
    c = e.__cause__ or e.__context__
    return type(c).__name__ if c is not None else type(e).__name__


def _server_message(e: openai.APIStatusError) -> str:
    try:
        body = e.response.json()
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else str(err)
    except Exception:
        msg = e.response.text[:200]
    return " ".join(str(msg).split())[:300]


def _parse_completion(body: str) -> tuple[str, int | None, int | None, tuple | None]:
    """(content, prompt tokens, completion tokens, first token's probabilities) of a chat completion body;
    _Retryable if malformed."""
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        content = choice["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("content is not a string")
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise _Retryable(f"malformed response body ({type(e).__name__}: {str(e)[:80]})") from None
    usage = data.get("usage") or {}
    return (content, _int_or_none(usage.get("prompt_tokens")), _int_or_none(usage.get("completion_tokens")),
            first_token_probs(choice))


def _int_or_none(v) -> int | None:
    return int(v) if isinstance(v, (int, float)) else None
