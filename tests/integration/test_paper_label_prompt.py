"""The paper's label prompt (one word, no punctuation) as an option of the score stage, over real HTTP."""

from __future__ import annotations

import dataclasses

import polars as pl

from tests.support.loopback import LoopbackServer
from ccs_dist.llm.prompts import label_request, load_template
from ccs_dist.llm.score import score_spans
from tests.support.llm_spans import config, make_spans


def test_paper_prompt_asks_for_one_word_with_one_word_examples():
    req = label_request(["a red car", "a red door", "a red apple", "red shoes", "a red sky"], template="label_paper")
    assert req.template == f"label_paper@{load_template('label_paper').version}"
    assert "exactly one word" in req.messages[0][1] and "mixed" not in req.messages[0][1]
    answers = [c for r, c in req.messages if r == "assistant"]
    assert len(answers) == 5 and all(a.isalpha() and a == a.lower() for a in answers)
    assert req.messages[-1][1].endswith("One word:") and "5. a red sky" in req.messages[-1][1]
    assert label_request(["x"] * 5).template.startswith("label@")


def test_score_stage_sends_the_chosen_label_prompt(tmp_path, key_env):
    spans = make_spans(n_heads=6)
    with LoopbackServer() as srv:
        base = config(srv.base_url, tmp_path / "cache", key_env)
        default = score_spans(spans, base)
        sent = srv.stats.requests
        paper = score_spans(spans, dataclasses.replace(base, label_prompt="label_paper"))
        # judgments of unchanged (description, label) pairs come from the cache; every label is asked anew
        assert srv.stats.requests - sent >= 6
    assert paper.labels["error"].is_null().all() and paper.labels.height == 6
    assert paper.labels["label"].to_list() == default.labels["label"].to_list()  # the server's answer, by either prompt
    assert pl.Series(paper.labels["label"]).str.contains(" ").not_().all()
