"""Job specs: the shipped specs validate; bad specs give one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccs_dist.errors import UserError
from ccs_dist.jobs.spec import load_spec
from tests.conftest import REPO


@pytest.mark.parametrize("name", ["demo.yaml", "paper_grid.yaml", "local_gpu.yaml"])
def test_shipped_specs_validate(name, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/data")
    spec = load_spec(REPO / "jobs" / name)
    assert spec.models and spec.run


def test_paper_grid_has_the_six_models(monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/datasets")
    spec = load_spec(REPO / "jobs" / "paper_grid.yaml")
    keys = {(m.arch, m.pretrained) for m in spec.models}
    assert keys == {("ViT-B-32", "openai"), ("ViT-B-32", "datacomp_m_s128m_b4k"), ("ViT-B-16", "openai"),
                    ("ViT-B-16", "laion2b_s34b_b88k"), ("ViT-L-14", "openai"), ("ViT-L-14", "laion2b_s32b_b82k")}
    assert spec.evaluation.data_root == "/datasets" and spec.llm.backend == "openai"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "spec.yaml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("run: x\nmodels: [{arch: ViT-B-32}]\nllm: {backend: claude}\n", "llm.backend: got 'claude', expected 'openai' or 'offline'"),
        ("run: x\nmodels: [{arch: ViT-B-32}]\nprobe: {imgs: synthetic:4}\n", "probe.imgs: unknown field"),
        ("run: x\n", "models: is required"),
        ("run: x\nmodels: []\n", "models:"),
        ("run: 'bad name!'\nmodels: [{arch: ViT-B-32}]\n", "run:"),
        ("run: x\nmodels: [{arch: ViT-B-32}]\nspans: {m: 0}\n", "spans.m:"),
        ("run: x\nmodels: [{arch: A}, {arch: A}]\n", "the same (arch, pretrained) appears twice"),
        ("run: x\nmodels: [{arch: ViT-B-32}]\nevaluation: {data_root: ${NO_SUCH_VAR_CCS}}\n", "NO_SUCH_VAR_CCS is not set"),
        ("run: [x\n", "is not valid YAML at line"),
        ("- just\n- a list\n", "must be a YAML mapping"),
    ],
)
def test_bad_specs(tmp_path, text, fragment):
    with pytest.raises(UserError) as e:
        load_spec(_write(tmp_path, text))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_variables_with_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("CCS_ROOT_X", raising=False)
    spec = load_spec(_write(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nevaluation: {data_root: '${CCS_ROOT_X:-/fallback}'}\n"))
    assert spec.evaluation.data_root == "/fallback"
    monkeypatch.setenv("CCS_ROOT_X", "/set")
    spec = load_spec(_write(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nevaluation: {data_root: '${CCS_ROOT_X:-/fallback}'}\n"))
    assert spec.evaluation.data_root == "/set"


def test_missing_spec_file(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_spec(tmp_path / "nope.yaml")
