"""The LLM stage against hostile or broken surroundings: trickling servers, several endpoints, over-long
descriptions, credentials in URLs, crafted / corrupt / read-only caches (issue 14). Loopback servers only."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from ccs_dist.llm.cache import AnswerCache
from tests.support.cli import one_line_error, run_cli
from tests.support.llm_spans import KEY, make_spans
from tests.support.loopback import LoopbackConfig, LoopbackServer

KEY2 = "sk-second-endpoint-KEY-91b2"


@pytest.fixture(scope="module")
def spans_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("spans") / "spans.parquet"
    make_spans(6).write_parquet(p)
    return p


def score(spans, out, base_url, cache, *extra, env=None, timeout=120):
    return run_cli("score", "--spans", str(spans), "--out", str(out), "--base-url", base_url, "--llm-model", "loopback-1",
               "--cache-dir", str(cache), "--api-key-env", "T_KEY", "--progress=False", "--judge-gold-pairs", "0", *extra,
               env={"T_KEY": KEY, **(env or {})}, timeout=timeout)  # gold pairs: tested apart, these count requests


class TricklingServer:
    """Accepts a request, sends 200 headers promising a long body, then one byte a second."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.stop = threading.Event()
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn):
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{")
            while not self.stop.wait(1.0):
                conn.sendall(b" ")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.stop.set()
        self.sock.close()


def test_a_trickling_server_cannot_hold_the_stage_past_its_deadline(spans_path, tmp_path):
    srv = TricklingServer()
    try:
        t0 = time.monotonic()
        p = score(spans_path, tmp_path / "o", srv.base_url, tmp_path / "c", "--timeout", "3", "--max-attempts", "2",
                  timeout=60)
        took = time.monotonic() - t0
    finally:
        srv.close()
    one_line_error(p, "no usable answer after 2 attempts")
    assert "no complete answer within 3 s" in p.stderr
    # 2 attempts x 3 s + one backoff (<= 1 s) + interpreter start-up; the old client was still waiting at 90 s
    assert took < 20, took


def test_the_default_key_goes_to_base_url_only(spans_path, tmp_path):
    with LoopbackServer(LoopbackConfig(models=("loopback-1",))) as a, LoopbackServer(LoopbackConfig(models=("m2",))) as b:
        p = score(spans_path, tmp_path / "o", a.base_url, tmp_path / "c", "--judges", f"loopback-1,m2@{b.base_url}")
        assert p.returncode == 0, p.stderr[-2000:]
        assert a.stats.auth_headers == {f"Bearer {KEY}"}
        assert b.stats.requests > 0 and b.stats.auth_headers == {""}  # no key at all
        p = score(spans_path, tmp_path / "o2", a.base_url, tmp_path / "c2", "--judges", f"loopback-1,m2@{b.base_url}#T_KEY2",
                  env={"T_KEY2": KEY2})
        assert p.returncode == 0, p.stderr[-2000:]
        assert b.stats.auth_headers == {"", f"Bearer {KEY2}"}  # its own key, never the default one
        assert a.stats.auth_headers == {f"Bearer {KEY}"}
    one_line_error(score(spans_path, tmp_path / "o3", a.base_url, tmp_path / "c3", "--judges", "m2@http://x/v1#1BAD"),
                   "invalid judge list")


def test_plain_http_to_a_remote_host_warns(caplog, monkeypatch):
    from ccs_dist.llm.client import EndpointClient
    from ccs_dist.llm.config import EndpointConfig

    monkeypatch.setenv("T_KEY", KEY)
    with caplog.at_level(logging.WARNING, logger="ccs_dist"):
        EndpointClient(EndpointConfig(model="m", base_url="http://10.1.2.3:8000/v1", api_key_env="T_KEY"), None)
        EndpointClient(EndpointConfig(model="m", base_url="http://127.0.0.1:8000/v1", api_key_env="T_KEY"), None)
        EndpointClient(EndpointConfig(model="m", base_url="https://10.1.2.3/v1", api_key_env="T_KEY"), None)
    warned = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warned) == 1 and "10.1.2.3:8000" in warned[0] and KEY not in warned[0]


def long_spans(path: Path) -> Path:
    spans = make_spans(6)
    spans = spans.with_columns(
        text=pl.when((pl.col("head") == 2) & (pl.col("rank") == 1)).then(pl.lit("a dog " * 170_000)).otherwise(pl.col("text")))
    spans.write_parquet(path)
    return path


def test_an_over_long_description_is_cut_or_flags_only_its_head(tmp_path):
    spans = long_spans(tmp_path / "long.parquet")
    with LoopbackServer(LoopbackConfig(models=("loopback-1",), max_prompt_chars=50_000)) as srv:
        cut = score(spans, tmp_path / "cut", srv.base_url, tmp_path / "c")  # default cap 2000 characters
        assert cut.returncode == 0, cut.stderr[-2000:]
        assert "cut to that length" in cut.stderr
        assert not pl.read_parquet(tmp_path / "cut" / "tables" / "ccs.parquet")["flagged"].any()
        meta = json.loads((tmp_path / "cut" / "tables" / "score_meta.json").read_text())
        assert meta["truncated_descriptions"] == 1 and meta["flagged"] == []
        # no cap: the endpoint refuses that head's requests for good; the head is flagged, the rest are scored
        big = score(spans, tmp_path / "big", srv.base_url, tmp_path / "c", "--max-description-chars", "10000000")
    assert big.returncode == 0, big.stderr[-2000:]
    ccs = pl.read_parquet(tmp_path / "big" / "tables" / "ccs.parquet")
    assert ccs.height == 6
    assert ccs.filter(pl.col("flagged"))["head"].to_list() == [2]
    assert ccs.filter(~pl.col("flagged"))["ccs"].null_count() == 0
    assert "1 flagged" in big.stdout and "L8.H2" in big.stdout and "L8.H2" in big.stderr
    meta = json.loads((tmp_path / "big" / "tables" / "score_meta.json").read_text())
    assert [f["head"] for f in meta["flagged"]] == ["ViT-B-16/laion2b_s34b_b88k L8.H2"]
    assert "400" in meta["flagged"][0]["reason"] and "context" in meta["flagged"][0]["reason"]


def test_empty_descriptions_are_refused(tmp_path):
    spans = make_spans(2).with_columns(text=pl.when(pl.col("rank") == 3).then(pl.lit("  ")).otherwise(pl.col("text")))
    spans.write_parquet(tmp_path / "s.parquet")
    one_line_error(score(tmp_path / "s.parquet", tmp_path / "o", "http://127.0.0.1:9/v1", tmp_path / "c"),
                   "empty description (rank 3 of ViT-B-16/laion2b_s34b_b88k L8.H0 and 1 more)")


def test_credentials_in_the_base_url_are_never_written(spans_path, tmp_path):
    from ccs_dist.llm.urls import redact_url

    assert redact_url("https://u:pw@h.example:8443/v1?api_key=s3&x=1") == "https://***@h.example:8443/v1?api_key=***&x=***"
    with LoopbackServer(LoopbackConfig(models=("loopback-1", "m2"))) as srv:
        url = srv.base_url.replace("http://", "http://alice:PASSWD-k7q@")
        out = tmp_path / "o"
        p = score(spans_path, out, url, tmp_path / "c", "--judges", f"loopback-1,m2@{url}", env={"CCS_LOG_LEVEL": "DEBUG"})
        bad = score(spans_path, tmp_path / "o2", url, tmp_path / "c", "--llm-model", "nope")
        echo = score(spans_path, tmp_path / "o3", srv.base_url + "?token=QSECRET9", tmp_path / "c3")  # 404 echoes the path
    assert p.returncode == 0, p.stderr[-2000:]
    assert bad.returncode == 2 and "unknown at http://***@127.0.0.1" in bad.stderr
    assert echo.returncode == 2 and "token=***" in echo.stderr and "QSECRET9" not in echo.stderr
    written = [f for f in out.rglob("*") if f.is_file()] + [f for f in (tmp_path / "c").rglob("*") if f.is_file()]
    assert written
    for text in [p.stdout, p.stderr, bad.stderr] + [f.read_bytes().decode("latin-1") for f in written]:
        assert "PASSWD" not in text and "alice" not in text
    assert set(pl.read_parquet(out / "tables" / "judgments.parquet")["judge"]) == {"loopback-1@127.0.0.1:" + url.split(":")[-1].split("/")[0],
                                                                        "m2@127.0.0.1:" + url.split(":")[-1].split("/")[0]}


def crafted_row(db: Path, key: str, filename: str, expire: float | None) -> None:
    con = sqlite3.connect(db)
    con.execute("INSERT OR REPLACE INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, mode,"
                " filename, value) VALUES (?, 1, 0, ?, 0, 0, NULL, 0, 3, ?, NULL)", (key, expire, filename))
    con.commit()
    con.close()


def test_a_crafted_cache_row_cannot_delete_files_outside_the_cache(spans_path, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "c" / "llm").mkdir(parents=True)
    sibling = tmp_path / "sibling.txt"
    sibling.write_text("precious too")
    cache = AnswerCache(tmp_path / "c" / "llm")
    cache.close()
    crafted_row(tmp_path / "c" / "llm" / "cache.db", "claim:x", str(victim), expire=1.0)  # absolute, long expired
    crafted_row(tmp_path / "c" / "llm" / "cache.db", "claim:y", "../sibling.txt", expire=1.0)  # relative, escaping
    with LoopbackServer(LoopbackConfig(models=("loopback-1",))) as srv:
        p = score(spans_path, tmp_path / "o", srv.base_url, tmp_path / "c")  # claims (adds) cull expired rows
        assert p.returncode == 0, p.stderr[-2000:]
    assert victim.read_text() == "precious" and sibling.read_text() == "precious too"
    assert "outside the cache: not removed" in p.stderr


def answered_cache(spans_path, tmp_path):
    """A cache holding every answer for spans_path, and the server that gave them."""
    srv = LoopbackServer(LoopbackConfig(models=("loopback-1",)))
    srv.start()
    p = score(spans_path, tmp_path / "o", srv.base_url, tmp_path / "c")
    assert p.returncode == 0, p.stderr[-2000:]
    return srv


def test_a_bad_cache_entry_is_one_miss_and_reported(spans_path, tmp_path):
    srv = answered_cache(spans_path, tmp_path)
    try:
        keys = AnswerCache(tmp_path / "c" / "llm").answer_keys()
        con = sqlite3.connect(tmp_path / "c" / "llm" / "cache.db")
        con.execute("UPDATE Cache SET value = '{not json' WHERE key = ?", (keys[0],))
        con.execute("UPDATE Cache SET value = '[1, 2]' WHERE key = ?", (keys[1],))
        con.commit()
        con.close()
        crafted_row(tmp_path / "c" / "llm" / "cache.db", keys[2], str(tmp_path / "victim"), expire=None)  # file mode: refused
        sent = srv.stats.requests
        p = score(spans_path, tmp_path / "o", srv.base_url, tmp_path / "c")
        assert p.returncode == 0, p.stderr[-2000:]
        assert srv.stats.requests - sent == 3  # only the three bad entries are asked again
        assert "3 unusable cache entries were asked again" in p.stdout and "Traceback" not in p.stderr
        assert json.loads((tmp_path / "o" / "tables" / "score_meta.json").read_text())["cache_bad_entries"] == 3
        again = score(spans_path, tmp_path / "o", srv.base_url, tmp_path / "c")  # repaired by the new answers
        assert again.returncode == 0 and srv.stats.requests - sent == 3 and "requests 0" in again.stdout
    finally:
        srv.stop()


def test_a_file_that_is_not_a_cache_is_one_line(spans_path, tmp_path):
    (tmp_path / "c" / "llm").mkdir(parents=True)
    (tmp_path / "c" / "llm" / "cache.db").write_bytes(b"this is not sqlite" * 100)
    one_line_error(score(spans_path, tmp_path / "o", "http://127.0.0.1:9/v1", tmp_path / "c"), "is not a readable cache")
    assert (tmp_path / "c" / "llm" / "cache.db").read_bytes().startswith(b"this is not sqlite")  # left as it was
    (tmp_path / "f").write_text("x")
    one_line_error(score(spans_path, tmp_path / "o", "http://127.0.0.1:9/v1", tmp_path / "f"), "is a file")


def _read_only_mount_works(tmp_path) -> bool:
    d = tmp_path / "probe"
    d.mkdir()
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        f"mount --bind -o ro {d} {d} && ! touch {d}/x"], capture_output=True, timeout=30)
    return r.returncode == 0 and shutil.which("unshare") is not None


def test_a_read_only_cache_with_every_answer_still_serves(spans_path, tmp_path):
    if not _read_only_mount_works(tmp_path):
        pytest.skip("needs unshare + a read-only bind mount (root in a mount namespace) to make the cache read-only")
    srv = answered_cache(spans_path, tmp_path)
    try:
        sent = srv.stats.requests
        cache = tmp_path / "c"
        wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c", f'mount --bind -o ro {cache} {cache} && exec "$@"', "sh"]
        base = ["score", "--spans", str(spans_path), "--base-url", srv.base_url,
                "--llm-model", "loopback-1", "--cache-dir", str(cache), "--api-key-env", "T_KEY", "--progress=False",
                "--judge-gold-pairs", "0"]
        p = run_cli(*base, "--out", str(tmp_path / "ro"), env={"T_KEY": KEY}, wrap=wrap, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        assert srv.stats.requests == sent and "requests 0" in p.stdout and "read-only" in p.stderr
        # a question it lacks is asked and answered, just not kept
        make_spans(7).write_parquet(tmp_path / "more.parquet")
        base[base.index(str(spans_path))] = str(tmp_path / "more.parquet")
        q = run_cli(*base, "--out", str(tmp_path / "ro2"), env={"T_KEY": KEY}, wrap=wrap, timeout=120)
        assert q.returncode == 0, q.stderr[-2000:]
        assert srv.stats.requests > sent and "new LLM answers are not kept" in q.stderr
    finally:
        srv.stop()


def test_an_endpoint_that_refuses_every_request_stops_the_stage(spans_path, tmp_path):
    with LoopbackServer(LoopbackConfig(models=("loopback-1",), max_prompt_chars=10)) as srv:
        p = score(spans_path, tmp_path / "o", srv.base_url, tmp_path / "c", "--concurrency", "1")
        assert srv.stats.requests == 5  # then nothing more is sent
    one_line_error(p, "rejected the first 5 requests and answered none")
    assert not (tmp_path / "o" / "tables" / "ccs.parquet").exists()
