"""A score run in which (nearly) every head is flagged fails: one-line UserError, non-zero exit, answers cached.

Before, an endpoint whose every label answer was unusable (``label '1' has no letter``) gave exit 0, a warning
and tables of nulls. The loopback server here answers every prompt with ``1``.
"""

from __future__ import annotations

import polars as pl
import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.llm.config import EndpointConfig, ScoreConfig
from ccs_dist.stages.config import replace
from ccs_dist.stages.score import score_stage
from tests.support.cli import one_line_error, run_cli
from tests.support.llm_spans import KEY, make_spans
from tests.support import loopback
from tests.support.loopback import LoopbackConfig, LoopbackServer


def _answers(broken: str | None):
    """The loopback's answers: ``1`` to label prompts holding ``broken`` (every prompt when None)."""
    real = loopback.reference_answer

    def answer(messages, structured):
        text = " ".join(str(m.get("content", "")) for m in messages)
        if broken is None or ("Label:" not in text and broken in text):
            return "1"
        return real(messages, structured)

    return answer


def test_every_head_flagged_fails_the_command_and_keeps_the_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(loopback, "reference_answer", _answers(None))
    spans = tmp_path / "spans.parquet"
    make_spans(6).write_parquet(spans)
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ("score", "--spans", str(spans), "--out", str(out), "--llm-model", "loopback-1", "--cache-dir", str(cache),
            "--api-key-env", "T_KEY", "--progress=False", "--judge-gold-pairs", "0")  # counts the heads' requests
    with LoopbackServer(LoopbackConfig()) as srv:
        p = run_cli(*args, "--base-url", srv.base_url, env={"T_KEY": KEY})
        one_line_error(p, "only 0 of 6 heads of")
        assert "has no letter" in p.stderr and "check that the labeler and judges" in p.stderr
        assert not (out / "tables" / "ccs.parquet").exists()  # no tables of nulls
        sent = srv.stats.requests
        assert sent == 6 * 3  # every head's label asked three times, then given up
        again = run_cli(*args, "--base-url", srv.base_url, env={"T_KEY": KEY})
        one_line_error(again, "only 0 of 6 heads of")
        assert srv.stats.requests == sent  # every answer came from the cache


def _endpoint(url: str) -> EndpointConfig:
    return EndpointConfig(model="loopback-1", base_url=url, api_key_env=None, rpm=60000, timeout_s=5)


def test_the_job_stage_fails_below_the_share_and_passes_above_it(tmp_path, monkeypatch):
    """Two of six heads unlabelled: the stage passes at the default share (0.5) and fails at 0.9."""
    spans = make_spans(6).with_columns(
        pl.when(pl.col("head") < 2).then(pl.col("text") + " brokenmarker").otherwise(pl.col("text")).alias("text"))
    monkeypatch.setattr(loopback, "reference_answer", _answers("brokenmarker"))
    with LoopbackServer(LoopbackConfig()) as srv:
        config = ScoreConfig(backend="openai", labeler=_endpoint(srv.base_url), judges=(_endpoint(srv.base_url),),
                             cache_dir=str(tmp_path / "c"), show_progress=False, judge_gold_pairs=0)
        result = score_stage(spans, config)
        assert int(result.ccs["flagged"].sum()) == 2
        sent = srv.stats.requests
        with pytest.raises(UserError, match=r"only 4 of 6 heads of .* got a CCS \(min_scored_share 0.9"):
            score_stage(spans, replace(config, min_scored_share=0.9))
        assert srv.stats.requests == sent  # the failed run asked nothing new: all cached
