"""Published description pools: fetched once over HTTP (a real server on 127.0.0.1), verified by sha256, cached."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.stages.sources import resolve_pool
from ccs_dist.text.remote import REMOTE_POOLS, RemotePool, cached_path, fetch_pool
from tests.support.paths import SHARED_DATA

PAPER_POOL = SHARED_DATA / "image_descriptions_general.txt"


class _Server:
    """Serves ``body`` at every path; counts the requests."""

    def __init__(self, body: bytes):
        self.body, self.requests = body, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/text_descriptions/pool.txt"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served():
    servers = []

    def start(body: bytes) -> _Server:
        servers.append(_Server(body))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _pool_for(body: bytes) -> RemotePool:
    return RemotePool("test_pool", "https://example.invalid/pool.txt", hashlib.sha256(body).hexdigest(), "test")


def test_fetched_once_verified_then_read_from_the_cache(served, tmp_path):
    body = "a photo of a dog\na red car\n\na photo of a dog\nsnow on mountains\n".encode()
    server = served(body)
    pool = _pool_for(body)
    path = fetch_pool(pool, tmp_path / "cache", url=server.url)
    assert path == cached_path(pool, tmp_path / "cache") and path.read_bytes() == body
    assert fetch_pool(pool, tmp_path / "cache", url=server.url) == path
    assert server.requests == 1  # the second call never touched the network


def test_a_changed_file_is_refused_and_nothing_is_cached(served, tmp_path):
    pool = _pool_for(b"the published text\n")
    server = served(b"the published text, edited\n")
    with pytest.raises(UserError, match=r"sha256 [0-9a-f]{16}\.\.\., expected [0-9a-f]{16}\.\.\.") as e:
        fetch_pool(pool, tmp_path / "cache", url=server.url)
    assert "\n" not in str(e.value) and "pass the path" in str(e.value)
    assert not cached_path(pool, tmp_path / "cache").exists()


def test_a_corrupted_cached_copy_is_fetched_again(served, tmp_path):
    body = b"one\ntwo\n"
    pool = _pool_for(body)
    target = cached_path(pool, tmp_path / "cache")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"one\ntw")  # truncated
    server = served(body)
    assert fetch_pool(pool, tmp_path / "cache", url=server.url).read_bytes() == body and server.requests == 1


def test_no_network_says_what_to_do(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once we leave: nothing listens there
    with pytest.raises(UserError, match="cannot download description pool test_pool .* pass its path"):
        fetch_pool(_pool_for(b"x\n"), tmp_path / "cache", url=f"http://127.0.0.1:{port}/pool.txt", timeout_s=5)


def test_source_address_is_the_textspan_authors_file():
    pool = REMOTE_POOLS["image_descriptions_general"]
    assert pool.url.startswith("https://raw.githubusercontent.com/yossigandelsman/clip_text_span/")
    assert pool.url.endswith("/text_descriptions/image_descriptions_general.txt")


@pytest.mark.skipif(not PAPER_POOL.is_file(), reason="../shared/data/image_descriptions_general.txt not present")
def test_the_papers_pool_by_name(served, tmp_path):
    body = PAPER_POOL.read_bytes()
    pool = REMOTE_POOLS["image_descriptions_general"]
    assert hashlib.sha256(body).hexdigest() == pool.sha256  # the pinned hash is the published file's
    server = served(body)
    fetch_pool(pool, tmp_path / "cache", url=server.url)
    got = resolve_pool("image_descriptions_general", tmp_path / "cache")  # now offline: from the cache
    assert len(got) + got.n_blank_dropped + got.n_duplicates_dropped == len(body.decode().splitlines())
    assert len(got) > 3400 and server.requests == 1
    assert Path(got.source) == cached_path(pool, tmp_path / "cache")
