"""Named protocols: ``protocol: paper`` fills the options it governs, explicit fields win, docs list every option."""

from __future__ import annotations

import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.jobs.spec import load_spec
from ccs_dist.core.protocol import OPTIONS, option_values
from tests.support.paths import REPO


def _spec(tmp_path, extra: str = ""):
    path = tmp_path / "spec.yaml"
    path.write_text("run: t\nmodels: [{arch: ccs-tiny}]\n" + extra)
    return load_spec(path)


def _value(spec, dotted: str):
    section, key = dotted.split(".")
    return getattr(getattr(spec, section), key)


def test_paper_protocol_fills_every_option_and_explicit_fields_win(tmp_path):
    default = _spec(tmp_path)
    paper = _spec(tmp_path, "protocol: paper\n")
    for o in OPTIONS:
        assert _value(default, o.field) == o.default and _value(paper, o.field) == o.paper, o.field
    assert paper.llm.label_prompt == "label_paper" and paper.evaluation.concept_heads == "high"
    assert paper.evaluation.video_pooling == "mean" and paper.score_config().label_prompt == "label_paper"
    mixed = _spec(tmp_path, "protocol: paper\nevaluation: {video_pooling: renormalised, tasks: [cifar10], data_root: /data}\n")
    assert mixed.evaluation.video_pooling == "renormalised" and mixed.evaluation.concept_heads == "high"
    assert mixed.evaluation.tasks == ("cifar10",)
    assert paper.spec_hash() != default.spec_hash()


def test_bad_protocol_is_a_one_line_error(tmp_path):
    with pytest.raises(UserError, match=r"protocol: got 'papers', expected 'default' or 'paper'") as e:
        _spec(tmp_path, "protocol: papers\n")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="unknown protocol"):
        option_values("papers")


def test_paper_grid_uses_the_paper_protocol_and_fp32_spans(monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/datasets")
    spec = load_spec("paper_grid")
    assert spec.protocol == "paper" and spec.spans.precision == "fp32" and spec.resources.precision == "bf16"
    assert spec.spans.precision == "fp32" and spec.spans.rank_policy == "numerical"


def test_docs_table_names_every_option_with_both_values():
    doc = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8")
    for o in OPTIONS:
        row = next((line for line in doc.splitlines() if f"`{o.field}`" in line), None)
        assert row is not None, f"docs/protocol.md lacks {o.field}"
        assert f"`{o.paper}`" in row and f"`{o.default}`" in row, row
    assert "docs/protocol.md" in (REPO / "README.md").read_text(encoding="utf-8")
