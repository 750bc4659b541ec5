"""A loopback OpenAI-compatible server for tests and benchmarks (127.0.0.1 only, stdlib HTTP).

``POST /v1/chat/completions`` answers deterministically from the prompt (see ``reference_*``);
``GET /v1/models`` lists its models; ``GET /_stats`` returns its counters. It can add latency, enforce
its own requests/min limit (429 with ``Retry-After``), inject faults (429, 500, hangs, malformed
bodies) and off-vocabulary answers at a given rate, require a key (401 otherwise), refuse
``response_format`` (400), refuse prompts over a context length (400 ``context_length_exceeded``),
send ``x-ratelimit-*`` headers, and go down for good after N answers.

Run standalone: ``python -m tests.support.loopback --port 0 --latency 0.1 --rpm 600``; the first line
on stdout is ``LISTENING <base_url>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.loopback_vision import BadImage, is_vision, logprobs_block, pixels_digest, vision_answer

_STOP = frozenset(
    "a an the of in on at to and or with for from by is are image photo picture close up closeup view "
    "its it this that some two three four five six".split()
)
_WORD = re.compile(r"[a-z]+")
FAULTS = ("429", "500", "hang", "malformed")


def content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _STOP]


def reference_label(descriptions: list[str]) -> str:
    """The word found in most descriptions (ties: alphabetical first); ``mixed`` if none is in two."""
    counts = Counter(w for d in descriptions for w in set(content_words(d)))
    if not counts:
        return "mixed"
    best = min(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return best[0] if best[1] >= 2 else "mixed"


def reference_verdict(description: str, label: str) -> bool:
    return label != "mixed" and label.lower() in content_words(description)


_NUMBERED = re.compile(r"^\s*\d+\.\s+(.*)$")


def _numbered(lines: list[str]) -> list[str]:
    return [m.group(1) for m in map(_NUMBERED.match, lines) if m]


def reference_answer(messages: list[dict], structured: bool) -> str | None:
    """The content the server answers to ``messages`` (None: not a request it understands)."""
    user = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    lines = str(user).splitlines()
    label = next((ln[len("Label:"):].strip() for ln in lines if ln.startswith("Label:")), None)
    if label is not None and label.startswith('"'):  # judge prompts quote the label as a JSON string
        try:
            label = str(json.loads(label))
        except ValueError:
            pass
    desc = next((ln[len("Description:"):].strip() for ln in lines if ln.startswith("Description:")), None)
    if label is not None and desc is not None:
        v = int(reference_verdict(desc, label))
        return json.dumps({"aligned": v}) if structured else str(v)
    descs = _numbered(lines)
    if label is not None and descs:
        return json.dumps({"verdicts": [int(reference_verdict(d, label)) for d in descs]})
    if descs:
        return reference_label(descs)
    return None


@dataclass
class LoopbackConfig:
    models: tuple[str, ...] = ("loopback-1",)
    latency_s: float = 0.0
    rpm: float | None = None  # the server's own limit (token bucket holding burst_s seconds of it)
    burst_s: float = 1.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    fault_retry_after_s: float = 0.05
    fault_first: int = 0  # the first this many chat requests get faults[0], whatever fault_rate says
    offvocab_rate: float = 0.0
    hang_s: float = 30.0
    api_key: str | None = None  # when set, other keys get 401
    json_schema: bool = True  # accept response_format (else 400)
    ratelimit_headers: bool = False
    down_after: int | None = None  # after this many answers every connection is dropped
    max_prompt_chars: int | None = None  # longer prompts (all message contents) get 400 context_length_exceeded
    seed: int = 0
    logprobs: bool = True  # return the first token's logprobs to vision requests that ask for them


@dataclass
class LoopbackStats:
    requests: int = 0  # chat completion requests received
    answered: int = 0  # 200 answers with a usable body
    rate_limited: int = 0  # 429 from the server's own limit (i.e. caused by the client)
    by_status: Counter = field(default_factory=Counter)
    injected: Counter = field(default_factory=Counter)
    payloads: Counter = field(default_factory=Counter)  # sha256 of each request body -> times received
    by_model: Counter = field(default_factory=Counter)  # chat requests received per requested model
    arrivals: list = field(default_factory=list)  # time.monotonic() of each chat request's arrival
    auth_headers: set = field(default_factory=set)
    bodies: list = field(default_factory=list)  # every chat request body as received (raw bytes)
    images: list = field(default_factory=list)  # (width, height, pixel sha256, label) of each image part decoded
    logprob_requests: int = 0  # chat requests that asked for logprobs

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "answered": self.answered,
            "rate_limited": self.rate_limited,
            "by_status": dict(self.by_status),
            "injected": dict(self.injected),
            "distinct_payloads": len(self.payloads),
            "max_repeats": max(self.payloads.values(), default=0),
        }


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops connections under a pool's bursts

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):  # clients that gave up
            super().handle_error(request, client_address)


class LoopbackServer:
    """Start with :meth:`start` (returns the base URL), stop with :meth:`stop`; also a context manager."""

    def __init__(self, config: LoopbackConfig = LoopbackConfig(), port: int = 0):
        self.config = config
        self.stats = LoopbackStats()
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed)
        self._stopping = threading.Event()
        self._level = None if config.rpm is None else config.rpm / 60.0 * config.burst_s
        self._t = time.monotonic()
        self._httpd = _Server(("127.0.0.1", port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> str:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:  # shutdown() waits for a serve_forever that must have started
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- decisions, under the lock ---------------------------------------------------------------

    def _take_token(self) -> float | None:
        """None if the request may pass, else seconds until it could."""
        if self._level is None:
            return None
        rate = self.config.rpm / 60.0
        cap = max(1.0, rate * self.config.burst_s)
        now = time.monotonic()
        self._level = min(cap, self._level + (now - self._t) * rate)
        self._t = now
        if self._level >= 1.0:
            self._level -= 1.0
            return None
        return (1.0 - self._level) / rate

    def _ratelimit_headers(self) -> dict[str, str]:
        if not self.config.ratelimit_headers or self.config.rpm is None:
            return {}
        return {
            "x-ratelimit-limit-requests": str(int(self.config.rpm)),
            "x-ratelimit-remaining-requests": str(int(self._level or 0)),
            "x-ratelimit-reset-requests": f"{60.0 / self.config.rpm:.3f}s",
        }


def _make_handler(server: LoopbackServer):
    cfg = server.config

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, code: int, body: bytes | str, headers: dict[str, str] | None = None):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
            with server._lock:
                server.stats.by_status[code] += 1

        def _error(self, code: int, message: str, headers=None, type_="invalid_request_error"):
            self._send(code, json.dumps({"error": {"message": message, "type": type_, "code": None}}), headers)

        def do_GET(self):
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, json.dumps({"object": "list", "data": [{"id": m, "object": "model", "owned_by": "loopback"} for m in cfg.models]}))
            elif self.path == "/_stats":
                with server._lock:
                    body = json.dumps(server.stats.as_dict())
                self._send(200, body)  # _send takes the lock itself
            else:
                self._error(404, f"no route {self.path}")

        def do_POST(self):
            n = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(n)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                return self._error(404, f"no route {self.path}")
            with server._lock:
                st = server.stats
                st.requests += 1
                st.arrivals.append(time.monotonic())
                st.payloads[hashlib.sha256(raw).hexdigest()] += 1
                st.auth_headers.add(self.headers.get("authorization", ""))
                st.bodies.append(raw)
                down = cfg.down_after is not None and st.answered >= cfg.down_after
                fault = cfg.faults[server._rng.randrange(len(cfg.faults))] if server._rng.random() < cfg.fault_rate else None
                if st.requests <= cfg.fault_first:
                    fault = cfg.faults[0]
                offvocab = server._rng.random() < cfg.offvocab_rate
            if down:
                self.close_connection = True  # no response: the client sees a dropped connection
                return
            auth = self.headers.get("authorization", "")
            if cfg.api_key is not None and auth != f"Bearer {cfg.api_key}":
                return self._error(401, "Incorrect API key provided", type_="invalid_api_key")
            try:
                req = json.loads(raw)
                messages = req["messages"]
                model = req["model"]
            except (ValueError, KeyError, TypeError):
                return self._error(400, "request body is not a chat completion request")
            with server._lock:
                server.stats.by_model[str(model)] += 1
            if model not in cfg.models:
                return self._error(404, f"The model `{model}` does not exist or you do not have access to it.")
            if cfg.max_prompt_chars is not None and sum(len(str(m.get("content", ""))) for m in messages) > cfg.max_prompt_chars:
                return self._send(400, json.dumps({"error": {"message": "This model's maximum context length is exceeded",
                                                             "type": "invalid_request_error", "code": "context_length_exceeded"}}))
            structured = req.get("response_format") is not None
            if structured and not cfg.json_schema:
                return self._error(400, "response_format json_schema is not supported by this server")
            with server._lock:
                wait = server._take_token()
                if wait is not None:
                    server.stats.rate_limited += 1
                headers = server._ratelimit_headers()
            if wait is not None:
                return self._error(429, "Rate limit reached for requests", {"retry-after": f"{wait:.3f}", "retry-after-ms": str(int(wait * 1000) + 1)}, "requests")
            if fault is not None:
                with server._lock:
                    server.stats.injected[fault] += 1
                if fault == "429":
                    return self._error(429, "injected rate limit", {"retry-after": f"{cfg.fault_retry_after_s:.3f}"}, "requests")
                if fault == "500":
                    return self._error(500, "injected server error", type_="server_error")
                if fault == "hang":
                    server._stopping.wait(cfg.hang_s)
                    self.close_connection = True
                    return
                if fault == "malformed":
                    return self._send(200, '{"id": "chatcmpl-x", "choices": [ {"message": ', headers)
            if cfg.latency_s > 0:
                time.sleep(cfg.latency_s)
            logprobs = None
            if is_vision(messages):
                try:
                    content, p_yes, images, label = vision_answer(messages)
                except BadImage as e:
                    return self._error(400, f"invalid image: {e}")
                with server._lock:
                    server.stats.images.extend((*pixels_digest(im), label) for im in images)
                    server.stats.logprob_requests += bool(req.get("logprobs"))
                if req.get("logprobs") and cfg.logprobs and not offvocab:
                    logprobs = logprobs_block(content, p_yes)
            else:
                content = reference_answer(messages, structured)
            if content is None:
                return self._error(400, "the loopback server does not understand this prompt")
            if offvocab:
                with server._lock:
                    server.stats.injected["offvocab"] += 1
                content = "Well, it is hard to say; perhaps both." if "aligned" in content or content in ("0", "1", "Yes", "No") or "verdicts" in content else "\n"
            body = {
                "id": "chatcmpl-" + hashlib.sha256(raw).hexdigest()[:12],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop",
                             **({"logprobs": logprobs} if logprobs else {})}],
                "usage": {"prompt_tokens": max(1, len(raw) // 4), "completion_tokens": max(1, len(content) // 4),
                          "total_tokens": max(1, len(raw) // 4) + max(1, len(content) // 4)},
            }
            self._send(200, json.dumps(body), headers)
            with server._lock:
                server.stats.answered += 1

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="loopback OpenAI-compatible server (127.0.0.1)")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    p.add_argument("--rpm", type=float, default=None, help="the server's own requests/min limit")
    p.add_argument("--fault-rate", type=float, default=0.0)
    p.add_argument("--offvocab-rate", type=float, default=0.0)
    p.add_argument("--model", action="append", default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("--ratelimit-headers", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cfg = LoopbackConfig(models=tuple(a.model or ["loopback-1"]), latency_s=a.latency, rpm=a.rpm, fault_rate=a.fault_rate,
                         offvocab_rate=a.offvocab_rate, api_key=a.api_key, ratelimit_headers=a.ratelimit_headers, seed=a.seed)
    server = LoopbackServer(cfg, port=a.port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    server.start()
    sys.stdout.write(f"LISTENING {server.base_url}\n")
    sys.stdout.flush()
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
