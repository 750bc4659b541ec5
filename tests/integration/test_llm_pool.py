"""The scoring stage against the loopback OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from dataclasses import replace

import polars as pl
import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.llm import EndpointConfig, ScoreConfig, score_spans
from ccs_dist.llm.cache import AnswerCache
from tests.support.llm_spans import KEY, config, make_spans
from tests.support.loopback import LoopbackConfig, LoopbackServer, reference_label, reference_verdict
from tests.support.paths import REPO


@pytest.fixture(scope="module")
def spans():
    return make_spans()


def expected_ccs(spans: pl.DataFrame) -> dict[tuple[int, int], tuple[str, int]]:
    out = {}
    for (layer, head), g in spans.sort("rank").group_by(["layer", "head"]):
        texts = g["text"].to_list()
        label = reference_label(texts)
        out[(layer, head)] = (label, sum(reference_verdict(t, label) for t in texts))
    return out


def test_48_heads_complete_then_cached_rerun_sends_nothing(spans, tmp_path, key_env):
    with LoopbackServer(LoopbackConfig(latency_s=0.005, api_key=KEY)) as srv:
        cfg = config(srv.base_url, tmp_path / "cache", key_env)
        r1 = score_spans(spans, cfg)
        sent = srv.stats.requests
        assert r1.labels.height == 48 and r1.ccs.height == 48 and r1.judgments.height == 240
        assert r1.judgments["aligned"].null_count() == 0 and not r1.ccs["flagged"].any()
        assert r1.ccs_at_k["fraction"].sum() == pytest.approx(1.0)
        want = expected_ccs(spans)
        got = {(r["layer"], r["head"]): (r["label"], r["ccs"]) for r in r1.ccs.iter_rows(named=True)}
        assert got == want  # prompts rendered, parsed by the server, answers parsed back
        assert r1.stats["misses"] == sent == srv.stats.as_dict()["distinct_payloads"]
        assert srv.stats.as_dict()["max_repeats"] == 1  # no request sent twice
        assert r1.stats["tokens_in"] > 0 and r1.stats["cost_usd"] > 0

        r2 = score_spans(spans, cfg)
        assert srv.stats.requests == sent  # zero HTTP requests
        assert r2.stats["requests"] == 0 and r2.stats["hits"] == r1.stats["hits"] + r1.stats["misses"]
        # The re-run's hits are priced at what they cost when asked: at least the whole first bill is avoided
        # (more: questions the first run asked once and shared in-process are each a cache hit now).
        per_answer = r1.stats["cost_usd"] / r1.stats["misses"]
        assert r2.stats["cost_usd"] == 0 and r1.stats["cost_usd"] <= r2.stats["cost_avoided_usd"] + 1e-12
        assert r2.stats["cost_avoided_usd"] <= 2 * per_answer * r2.stats["hits"]
        for name in ("labels", "judgments", "ccs", "ccs_at_k"):
            assert getattr(r2, name).equals(getattr(r1, name)), name

        r3 = score_spans(spans, replace(cfg, cache_dir=str(tmp_path / "cache"), cache="refresh"))
        assert srv.stats.requests > sent and r3.stats["hits"] == r1.stats["hits"] and r3.ccs.equals(r1.ccs)


def test_faults_are_survived_and_off_vocabulary_never_counts_as_zero(spans, tmp_path, key_env):
    lb = LoopbackConfig(fault_rate=0.2, offvocab_rate=0.1, hang_s=5.0, seed=3)
    with LoopbackServer(lb) as srv:
        r = score_spans(spans, config(srv.base_url, tmp_path / "cache", key_env, max_concurrency=32))
        st = srv.stats.as_dict()
    assert all(st["injected"].get(f, 0) > 0 for f in ("429", "500", "hang", "malformed", "offvocab"))
    assert r.stats["retries"] > 0 and r.stats["rate_limited"] > 0
    # every head scored; verdicts equal the fault-free reference, so no bad answer became a 0
    got = {(x["layer"], x["head"]): (x["label"], x["ccs"]) for x in r.ccs.iter_rows(named=True)}
    assert got == expected_ccs(spans)
    assert r.ccs_at_k["fraction"].sum() == pytest.approx(1.0)


def test_persistent_off_vocabulary_is_a_failed_verdict(spans, tmp_path, key_env):
    with LoopbackServer(LoopbackConfig(offvocab_rate=1.0)) as srv:
        r = score_spans(spans.filter(pl.col("layer") == 8).head(10), config(srv.base_url, tmp_path / "c", key_env))
    assert r.labels["label"].null_count() == 2 and r.labels["error"].str.contains("unusable label").all()
    assert r.judgments["aligned"].null_count() == 10 and r.ccs["flagged"].all()
    assert r.ccs_at_k["n_flagged"].max() == 2 and r.ccs_at_k["fraction"].null_count() == 6


def test_endpoint_down_stops_with_clear_message_and_keeps_answers(spans, tmp_path, key_env):
    with LoopbackServer(LoopbackConfig(down_after=25)) as srv:
        cfg = config(srv.base_url, tmp_path / "cache", key_env, max_concurrency=1, max_attempts=3)
        with pytest.raises(UserError, match=r"no usable answer after 3 attempts .*re-run") as e:
            score_spans(spans, cfg)
        answered = srv.stats.answered
    assert "\n" not in str(e.value) and answered == 25
    assert len(AnswerCache(tmp_path / "cache")) == answered  # everything obtained is cached


def test_unreachable_base_url(spans, tmp_path, key_env):
    srv = LoopbackServer()
    url = srv.base_url
    srv.stop()  # nothing listens there now
    with pytest.raises(UserError, match="cannot connect"):
        score_spans(spans.head(5), config(url, tmp_path / "c", key_env, max_attempts=2))


def test_401_fails_at_once(spans, tmp_path, monkeypatch):
    monkeypatch.setenv("WRONG_KEY", "sk-wrong")
    with LoopbackServer(LoopbackConfig(api_key=KEY)) as srv:
        with pytest.raises(UserError, match=r"rejected the API key \(401.*WRONG_KEY"):
            score_spans(spans, config(srv.base_url, tmp_path / "c", "WRONG_KEY"))
        assert srv.stats.by_status[401] <= 16  # no retries: at most the requests already in flight


def test_unknown_model_and_missing_key(spans, tmp_path, key_env, monkeypatch):
    with LoopbackServer() as srv:
        cfg = config(srv.base_url, tmp_path / "c", key_env)
        bad = replace(cfg, labeler=replace(cfg.labeler, model="gpt-nope"))
        with pytest.raises(UserError, match=r"model 'gpt-nope' is unknown .*404"):
            score_spans(spans, bad)
        monkeypatch.delenv(key_env)
        with pytest.raises(UserError, match=f"set the environment variable {key_env}"):
            score_spans(spans, cfg)


def test_key_never_written_or_logged(spans, tmp_path, key_env, caplog):
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    with LoopbackServer(LoopbackConfig(api_key=KEY, fault_rate=0.1)) as srv:
        score_spans(spans.head(50), config(srv.base_url, tmp_path / "cache", key_env)).write(out)
        assert f"Bearer {KEY}" in srv.stats.auth_headers  # the key was really used
    assert KEY not in caplog.text
    files = [p for p in [*(tmp_path / "cache").rglob("*"), *out.rglob("*")] if p.is_file()]
    assert len(files) >= 5
    for p in files:
        assert KEY.encode() not in p.read_bytes(), p


def test_head_mode_json_fallback_and_two_judges(spans, tmp_path, key_env):
    with LoopbackServer(LoopbackConfig(models=("loopback-1", "loopback-2"), json_schema=False)) as srv:
        cfg = config(srv.base_url, tmp_path / "c", key_env)
        j2 = replace(cfg.labeler, model="loopback-2")
        cfg = replace(cfg, judges=(cfg.labeler, j2), judge_mode="head")
        r = score_spans(spans, cfg)
        assert srv.stats.by_status[400] >= 1  # json_schema refused, then plain answers parsed strictly
        sent = srv.stats.requests
        r2 = score_spans(spans, cfg)
        assert srv.stats.requests == sent and r2.ccs.equals(r.ccs)
    assert set(r.judgments["judge"]) == {cfg.labeler.name, j2.name} and r.judgments.height == 480
    got = {(x["layer"], x["head"]): (x["label"], x["ccs"]) for x in r.ccs.iter_rows(named=True)}
    assert got == expected_ccs(spans)


def test_each_judge_endpoint_is_asked_for_every_description(tmp_path, key_env):
    """Two judges on one server: the second judge's verdicts come from its own model, not the first's cache."""
    spans = make_spans(6)
    with LoopbackServer(LoopbackConfig(models=("loopback-1", "loopback-2"))) as srv:
        cfg = config(srv.base_url, tmp_path / "c", key_env, timeout_s=30)  # no timeouts, so no re-sends
        j2 = replace(cfg.labeler, model="loopback-2")
        r = score_spans(spans, replace(cfg, judges=(cfg.labeler, j2)))
        by_model = dict(srv.stats.by_model)
    assert by_model.get("loopback-2", 0) >= spans.height  # one pair question per description, asked of judge 2 itself
    assert by_model["loopback-1"] >= 6 + spans.height  # the labels, then judge 1's verdicts
    from_j2 = r.judgments.filter(pl.col("judge") == j2.name)
    assert from_j2.height == spans.height and from_j2["aligned"].null_count() == 0


def test_cache_keys_differ_by_model_and_by_prompt_version(key_env):
    from ccs_dist.llm.client import EndpointClient
    from ccs_dist.llm.prompts import judge_pair_request

    req = judge_pair_request("a photo of a dog", "dogs")
    ep = EndpointConfig(model="m1", base_url="http://127.0.0.1:9/v1", api_key_env=key_env)
    first, other_model = EndpointClient(ep, None), EndpointClient(replace(ep, model="m2"), None)
    assert first._key(req, False) == EndpointClient(ep, None)._key(req, False)  # deterministic
    assert first._key(req, False) != other_model._key(req, False)
    next_version = replace(req, template=req.template.rsplit("@", 1)[0] + "@v999")
    assert first._key(req, False) != first._key(next_version, False)


def test_retry_after_pauses_the_whole_pool_at_least_that_long(key_env):
    """The first request gets 429 with Retry-After: its retry and a request issued meanwhile both wait that long."""
    import asyncio

    from ccs_dist.llm.client import EndpointClient
    from ccs_dist.llm.prompts import judge_pair_request

    wait = 0.5
    with LoopbackServer(LoopbackConfig(faults=("429",), fault_first=1, fault_retry_after_s=wait)) as srv:
        ep = EndpointConfig(model="loopback-1", base_url=srv.base_url, api_key_env=key_env, rpm=60000, tpm=1e8,
                            timeout_s=5, max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05)

        async def run():
            client = EndpointClient(ep, None, "bypass")
            try:
                first = asyncio.create_task(client.ask(judge_pair_request("a dog on grass", "dogs")))
                while client.stats.rate_limited == 0 and not first.done():
                    await asyncio.sleep(0.005)
                second = await client.ask(judge_pair_request("a cat on a sofa", "cats"))
                return await first, second, client.stats
            finally:
                await client.aclose()

        a, b, stats = asyncio.run(run())
        arrivals = list(srv.stats.arrivals)
    assert stats.rate_limited == 1 and a.text and b.text
    assert len(arrivals) == 3
    assert min(arrivals[1:]) - arrivals[0] >= wait  # neither the retry nor the other request came sooner


def test_server_ratelimit_headers_tighten_the_pool(tmp_path, key_env):
    spans = make_spans(8)
    with LoopbackServer(LoopbackConfig(rpm=1200, burst_s=0.5, ratelimit_headers=True)) as srv:
        cfg = config(srv.base_url, tmp_path / "c", key_env, burst_s=0.05)
        r = score_spans(spans, cfg)  # we believe 60000/min; the server allows 1200/min
        st = srv.stats.as_dict()
    assert st["answered"] == r.stats["misses"] == 8 * 6 - r.stats["hits"]
    assert st["rate_limited"] <= 2  # the headers, not 429s, set the pace


def test_invalid_judge_list(spans, tmp_path, key_env):
    with LoopbackServer() as srv:
        cfg = config(srv.base_url, tmp_path / "c", key_env)
        with pytest.raises(UserError, match="names one judge twice"):
            score_spans(spans, replace(cfg, judges=(cfg.labeler, cfg.labeler)))
        with pytest.raises(UserError, match="no judges"):
            score_spans(spans, replace(cfg, judges=()))


_WORKER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[4])
    from tests.support.llm_spans import make_spans, config
    from ccs_dist.llm import score_spans
    r = score_spans(make_spans(), config(sys.argv[1], sys.argv[2], "CCS_TEST_KEY"))
    r.write(sys.argv[3])
    print(json.dumps({k: r.stats[k] for k in ("hits", "misses", "requests")}))
    """
)


def test_two_processes_share_one_cache(tmp_path):
    import os

    env = {**os.environ, "CCS_TEST_KEY": KEY, "PYTHONPATH": str(REPO)}
    with LoopbackServer(LoopbackConfig(latency_s=0.02)) as srv:
        procs = [
            subprocess.Popen([sys.executable, "-c", _WORKER, srv.base_url, str(tmp_path / "cache"), str(tmp_path / f"out{i}"), str(REPO)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)
        ]
        outs = [p.communicate(timeout=120) for p in procs]
        st = srv.stats.as_dict()
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0, e[-2000:]
    stats = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    # claims in the shared cache: each distinct request went out exactly once between both processes
    assert st["max_repeats"] == 1 and st["requests"] == st["distinct_payloads"]
    assert sum(s["misses"] for s in stats) == st["requests"]
    assert len(AnswerCache(tmp_path / "cache")) == st["requests"]
    for name in ("labels", "judgments", "ccs", "ccs_at_k"):
        a, b = (pl.read_parquet(tmp_path / f"out{i}" / f"{name}.parquet") for i in range(2))
        assert a.equals(b), name
