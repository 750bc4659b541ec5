"""The vision judge against a real loopback HTTP server that decodes the image parts it receives."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

from ccs_dist.core.errors import UserError
from ccs_dist.llm.cache import request_key
from ccs_dist.llm.client import ChatRequest, EndpointClient
from ccs_dist.llm.config import EndpointConfig, VisionJudgeConfig
from ccs_dist.llm.vision import judge_images, parse_yes_no, png_bytes, yes_probability
from tests.support.llm_spans import KEY
from tests.support.loopback import LoopbackConfig, LoopbackServer
from tests.support.loopback_vision import pixels_digest

MODEL = "vision-1"


def _images(seed: int = 0) -> np.ndarray:
    """Four reddish, four bluish and two grey 8x8 images, each with its own noise."""
    rng = np.random.default_rng(seed)
    base = [(200, 30, 30)] * 4 + [(30, 40, 210)] * 4 + [(120, 120, 120)] * 2
    noise = rng.integers(-25, 26, size=(len(base), 8, 8, 3))
    return np.clip(np.array(base)[:, None, None, :] + noise, 0, 255).astype(np.uint8)


def _share(img_WW3: np.ndarray, ch: int) -> float:
    m = img_WW3.reshape(-1, 3).astype(np.float64).mean(axis=0)
    return min(0.99, max(0.01, float(m[ch] / m.sum())))


def _config(base_url: str, cache_dir, key_env: str | None, **kw) -> VisionJudgeConfig:
    ep = EndpointConfig(model=MODEL, base_url=base_url, api_key_env=key_env, max_attempts=kw.pop("max_attempts", 3),
                        timeout_s=kw.pop("timeout_s", 10.0), backoff_base_s=0.01, backoff_max_s=0.05)
    return VisionJudgeConfig(endpoint=ep, cache_dir=str(cache_dir), **kw)


def test_the_server_decodes_the_images_sent_and_the_verdicts_follow_their_pixels(cache_dir, key_env, caplog):
    caplog.set_level(logging.DEBUG)
    images = _images()
    with LoopbackServer(LoopbackConfig(models=(MODEL,), api_key=KEY)) as server:
        cfg = _config(server.base_url, cache_dir, key_env)
        red = judge_images(cfg, "red", images)
        # every image part arrived as a base64 PNG that decodes to exactly the pixels sent, for the model asked
        sent = sorted((*pixels_digest(im), "red") for im in images)
        assert sorted(server.stats.images) == sent
        assert dict(server.stats.by_model) == {MODEL: len(images)}
        assert server.stats.auth_headers == {f"Bearer {KEY}"}
        assert server.stats.logprob_requests == len(images)
        assert [v.shows for v in red] == [True] * 4 + [False] * 6
        assert all(v.from_logprobs for v in red)
        assert [v.probability for v in red] == pytest.approx([_share(im, 0) for im in images])
        # the null: the same images under a label they do not show are all refused; under blue the other four pass
        green = judge_images(cfg, "green", images)
        blue = judge_images(cfg, "blue", images)
        assert [v.shows for v in green] == [False] * 10
        assert [v.shows for v in blue] == [False] * 4 + [True] * 4 + [False] * 2
        asked = server.stats.requests
        assert asked == 3 * len(images)

        # a rerun is answered from the disk cache: no request reaches the server
        again = judge_images(cfg, "red", images)
        assert again == red and server.stats.requests == asked
        # PNG bytes are the same images: same cache entries
        assert judge_images(cfg, "red", png_bytes(images)) == red and server.stats.requests == asked
    # the key went to the endpoint and nowhere else: not into the cache's files, not into any log line
    for f in cache_dir.rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in caplog.text


def test_another_model_or_prompt_label_is_a_cache_miss(cache_dir, key_env):
    images = _images(1)[:3]
    with LoopbackServer(LoopbackConfig(models=(MODEL, "vision-2"), api_key=KEY)) as server:
        judge_images(_config(server.base_url, cache_dir, key_env), "red", images)
        cfg2 = _config(server.base_url, cache_dir, key_env)
        cfg2 = VisionJudgeConfig(endpoint=EndpointConfig(**{**cfg2.endpoint.__dict__, "model": "vision-2"}), cache_dir=str(cache_dir))
        judge_images(cfg2, "red", images)
        judge_images(_config(server.base_url, cache_dir, key_env), "Red", images)
        assert server.stats.requests == 9
        assert dict(server.stats.by_model) == {MODEL: 6, "vision-2": 3}


def test_without_logprobs_the_probability_is_the_answer(cache_dir):
    images = _images(2)
    with LoopbackServer(LoopbackConfig(models=(MODEL,), logprobs=False)) as server:
        out = judge_images(_config(server.base_url, cache_dir, None), "red", images)
    assert [v.probability for v in out] == [1.0] * 4 + [0.0] * 6
    assert not any(v.from_logprobs for v in out)


def test_answers_that_are_not_yes_or_no_are_asked_again_then_fail(cache_dir):
    images = _images(3)[:2]
    with LoopbackServer(LoopbackConfig(models=(MODEL,), offvocab_rate=1.0)) as server:
        out = judge_images(_config(server.base_url, cache_dir, None, answer_attempts=3), "red", images)
        assert server.stats.requests == 6
    assert [v.shows for v in out] == [None, None] and all("not Yes or No" in v.error for v in out)
    assert all(v.probability is None for v in out)


def test_a_bad_endpoint_is_one_line_error(cache_dir):
    with LoopbackServer(LoopbackConfig(models=(MODEL,))) as server:
        url = server.base_url
    with pytest.raises(UserError) as e:  # the server is gone: connection refused on every attempt
        judge_images(_config(url, cache_dir, None, max_attempts=2, timeout_s=2.0), "red", _images()[:1])
    msg = str(e.value)
    assert "\n" not in msg and "127.0.0.1" in msg and "check --base-url" in msg
    with pytest.raises(UserError) as e:
        judge_images(_config("ftp://example", cache_dir, None), "red", _images()[:1])
    assert "\n" not in str(e.value) and "http(s)" in str(e.value)
    with LoopbackServer(LoopbackConfig(models=("other",))) as server:
        with pytest.raises(UserError, match="unknown at") as e:
            judge_images(_config(server.base_url, cache_dir, None), "red", _images()[:1])
    assert "\n" not in str(e.value)


def test_bad_images_are_refused_before_any_request(cache_dir):
    with pytest.raises(UserError, match=r"\[N, W, W, 3\]"):
        png_bytes(np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(UserError, match="uint8 or floats"):
        png_bytes(np.full((1, 4, 4, 3), 2.0))
    with pytest.raises(UserError, match="not PNG bytes"):
        png_bytes([b"GIF89a..."])
    floats = png_bytes(np.full((1, 4, 4, 3), 0.5))[0]
    assert np.asarray(Image.open(io.BytesIO(floats))).max() == 128


def test_strict_parsing_and_yes_probability():
    assert parse_yes_no("Yes") is True and parse_yes_no(" no. ") is False
    for bad in ("", "Yes, it does", "1", "maybe", "yes no"):
        with pytest.raises(ValueError):
            parse_yes_no(bad)
    assert yes_probability([("Yes", 0.6), (" yes", 0.1), ("No", 0.1), ("Maybe", 0.2)]) == pytest.approx(0.875)
    assert yes_probability([("Maybe", 1.0)]) is None and yes_probability(None) is None


def test_text_requests_keep_their_cache_keys(cache_dir):
    """Content parts and logprobs changed the client: a text request's key must be what it always was."""
    client = EndpointClient(EndpointConfig(base_url="http://127.0.0.1:9/v1", api_key_env=None), None)
    req = ChatRequest((("system", "s"), ("user", "u")), template="judge_pair@2", max_tokens=8)
    old = request_key({"endpoint": "127.0.0.1:9/v1", "model": client.cfg.model, "messages": [["system", "s"], ["user", "u"]],
                       "params": {"temperature": 0.0, "max_tokens": 8}, "response_format": None,
                       "template": "judge_pair@2", "ask": 0})
    assert client._key(req, False) == old
