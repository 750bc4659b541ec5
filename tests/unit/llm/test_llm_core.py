"""Rate limiter, cache, prompts and answer parsing of the LLM stage (no network)."""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
import time

import pytest

from ccs_dist.llm.answers import InvalidAnswer, normalise_label, parse_head_verdicts, parse_pair_verdict
from ccs_dist.llm.cache import AnswerCache, CacheCorrupt, request_key
from tests.support.loopback import reference_answer, reference_label, reference_verdict
from ccs_dist.llm.prompts import judge_head_request, judge_pair_request, label_request, load_template
from ccs_dist.llm.ratelimit import RateLimiter, TokenBucket, parse_duration


def test_parse_duration():
    assert parse_duration("6m0s") == 360.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("2") == 2.0
    assert parse_duration("soon") is None


def test_token_bucket_paces_to_rate():
    async def run():
        lim = RateLimiter(rpm=600, tpm=1e9, burst_s=0.1)  # 10/s, burst 1
        t0 = time.monotonic()
        for _ in range(11):
            await lim.acquire(1)
        return time.monotonic() - t0

    elapsed = asyncio.run(run())
    assert 0.9 <= elapsed < 1.4  # 1 immediate + 10 more at 10/s


def test_token_bucket_wait_and_debt():
    b = TokenBucket(rate=10, capacity=2)
    assert b.wait_time(1) == 0
    b.take(5)  # debt
    assert b.wait_time(1) == pytest.approx(0.4, abs=0.02)


def test_limiter_adopts_server_headers():
    lim = RateLimiter(rpm=6000, tpm=1e6)
    lim.observe_headers({"X-RateLimit-Limit-Requests": "600", "x-ratelimit-remaining-requests": "0"})
    assert lim.rpm == 600 and lim.requests.rate == pytest.approx(10.0)
    assert lim.requests.wait_time(1) > 0.05  # remaining 0 empties the bucket
    lim.observe_headers({"x-ratelimit-limit-requests": "60000"})  # never loosened
    assert lim.rpm == 600


def test_request_key_is_canonical():
    a = request_key({"b": 1, "a": [1, 2], "m": "é"})
    assert a == request_key({"a": [1, 2], "m": "é", "b": 1})
    assert a != request_key({"a": [2, 1], "m": "é", "b": 1})
    assert len(a) == 64


def test_cache_roundtrip_claims_and_no_pickle(tmp_path):
    c = AnswerCache(tmp_path / "c")
    c.set("k", {"text": "colors"})
    assert c.get("k") == {"text": "colors"} and c.get("missing") is None
    assert c.claim("q", lease_s=5) and not c.claim("q", lease_s=5) and c.claimed("q")
    c.release("q")
    assert not c.claimed("q") and c.claim("q", lease_s=0.05)
    time.sleep(0.1)
    assert c.claim("q", lease_s=5)  # an expired claim can be taken over
    with pytest.raises(TypeError):
        c._c.set("obj", {"not": "text"})  # would need pickle
    assert c.answer_keys() == ["k"]
    c.close()
    # a row forged to hold a pickle is refused, never unpickled
    con = sqlite3.connect(tmp_path / "c" / "cache.db")
    con.execute("UPDATE Cache SET mode = 4, value = ? WHERE key = 'k'", (pickle.dumps({"text": "x"}),))
    con.commit()
    con.close()
    c = AnswerCache(tmp_path / "c")
    assert c.get("k") is None and c.bad_entries == ["k"]  # a miss, reported, never unpickled
    c.set("k", {"text": "colors"})  # the next answer replaces it
    assert c.get("k") == {"text": "colors"}


def test_label_prompt_is_few_shot_with_version():
    req = label_request(["a red car", "a red door", "a red apple", "red shoes", "a red sky"])
    roles = [r for r, _ in req.messages]
    assert roles == ["system"] + ["user", "assistant"] * 5 + ["user"]
    answers = [c for r, c in req.messages if r == "assistant"]
    assert {"geo-location", "counting", "colors", "animals", "texture"} == set(answers)
    assert req.template == f"label@{load_template('label').version}" and req.temperature == 0.0
    assert "5. a red sky" in req.messages[-1][1]


def test_judge_requests_and_reference_server_answers():
    pair = judge_pair_request("A photo of a red bus", "red")
    assert pair.json_schema["required"] == ["aligned"]
    msgs = [{"role": r, "content": c} for r, c in pair.messages]
    assert reference_answer(msgs, structured=False) == "1"
    assert reference_answer(msgs, structured=True) == '{"aligned": 1}'
    head = judge_head_request(["red bus", "blue car", "red sky"], "red")
    assert head.json_schema["properties"]["verdicts"]["maxItems"] == 3
    assert reference_answer([{"role": r, "content": c} for r, c in head.messages], True) == '{"verdicts": [1, 0, 1]}'
    assert reference_label(["red bus", "red car", "a dog"]) == "red"
    assert reference_label(["one", "two"]) == "mixed" and not reference_verdict("mixed bag", "mixed")


@pytest.mark.parametrize(
    "raw,want",
    [("Geo-Location.", "geo-location"), ('"Colors"', "colors"), ("Shared property: Animals!\nbecause", "animals"),
     ("  texture  ", "texture"), ("Time of Day", "time of day")],
)
def test_normalise_label(raw, want):
    assert normalise_label(raw) == want


@pytest.mark.parametrize("raw", ["", "\n", "...", "this is a very long label that keeps going on"])
def test_normalise_label_rejects(raw):
    with pytest.raises(InvalidAnswer):
        normalise_label(raw)


def test_pair_verdict_is_strict():
    assert parse_pair_verdict("1") is True and parse_pair_verdict(" 0.") is False
    assert parse_pair_verdict('{"aligned": 1}') is True
    for bad in ["yes", "2", "1 0", '{"aligned": true}', '{"aligned": 1, "x": 2}', "maybe", ""]:
        with pytest.raises(InvalidAnswer):
            parse_pair_verdict(bad)


def test_head_verdicts_are_strict():
    assert parse_head_verdicts('{"verdicts": [1,0,1,1,0]}', 5) == [True, False, True, True, False]
    assert parse_head_verdicts("[0,0,0,0,1]", 5)[-1] is True
    assert parse_head_verdicts("1, 0, 1, 1, 0", 5)[0] is True
    for bad in ['{"verdicts": [1,0,1]}', '{"verdicts": [1,0,1,1,2]}', "1,0,1,1", "all of them", '{"v": [1,1,1,1,1]}']:
        with pytest.raises(InvalidAnswer):
            parse_head_verdicts(bad, 5)
