"""Job specs cannot be bent by their environment or by YAML quirks (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccs_dist.core.errors import UserError
from ccs_dist.jobs.spec import load_spec


def _spec(tmp_path, text: str):
    p = tmp_path / "spec.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_variables_are_substituted_into_values_not_into_the_yaml_text(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOT", "/data/with # hash\nout: /tmp/hijacked")
    spec = load_spec(_spec(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nevaluation:\n  data_root: ${ROOT}\n"))
    assert spec.evaluation.data_root == "/data/with # hash\nout: /tmp/hijacked"  # one value, whole
    assert spec.out == str(Path.cwd() / "reports")  # the default, resolved against the starting directory: no key added
    monkeypatch.delenv("ROOT")
    spec = load_spec(_spec(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nevaluation:\n  data_root: ${ROOT:-/d}/sub\n"))
    assert spec.evaluation.data_root == "/d/sub"
    with pytest.raises(UserError, match="ROOT is not set"):
        load_spec(_spec(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nevaluation:\n  data_root: ${ROOT}\n"))


def test_a_key_given_twice_is_an_error(tmp_path):
    with pytest.raises(UserError, match="line 3: key 'run' is given twice"):
        load_spec(_spec(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nrun: y\n"))
    with pytest.raises(UserError, match="given twice"):
        load_spec(_spec(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nprobe: {batch_size: 8, batch_size: 9}\n"))


@pytest.mark.parametrize("field", ["layers: true", "probe: {batch_size: true}", "models: [{arch: ViT-B-32, layers: false}]"])
def test_true_false_is_not_a_number(tmp_path, field):
    text = "run: x\nmodels: [{arch: ViT-B-32}]\n" if not field.startswith("models") else "run: x\n"
    with pytest.raises(UserError, match="not true/false"):
        load_spec(_spec(tmp_path, text + field + "\n"))


def test_variables_work_in_flow_mappings_too(tmp_path, monkeypatch):
    monkeypatch.setenv("URL", "http://h:1/v1?a=1#frag}")
    spec = load_spec(_spec(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nllm: {labeler: {base_url: ${URL}}}\n"))
    assert spec.llm.labeler.base_url == "http://h:1/v1?a=1#frag}"
