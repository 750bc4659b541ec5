"""Job specs: the shipped specs validate; bad specs give one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

import ccs_dist

from ccs_dist.core.errors import UserError
from ccs_dist.jobs.spec import load_spec
from ccs_dist.models.loading import check_model_names


@pytest.mark.parametrize("name", ["demo", "paper_grid", "local_gpu", "beyond_grid", "planted"])
def test_shipped_specs_validate(name, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/data")
    spec = load_spec(name)
    assert spec.models and spec.run


def test_paper_grid_has_the_six_models(monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/datasets")
    spec = load_spec("paper_grid")
    keys = {(m.arch, m.pretrained) for m in spec.models}
    assert keys == {("ViT-B-32", "openai"), ("ViT-B-32", "datacomp_m_s128m_b4k"), ("ViT-B-16", "openai"),
                    ("ViT-B-16", "laion2b_s34b_b88k"), ("ViT-L-14", "openai"), ("ViT-L-14", "laion2b_s32b_b82k")}
    assert spec.evaluation.data_root == "/datasets" and spec.llm.backend == "openai"


def test_beyond_grid_names_models_open_clip_and_transformers_know(monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/datasets")
    monkeypatch.delenv("HF_CLIP", raising=False)
    spec = load_spec("beyond_grid")
    kinds = {m.arch: check_model_names(m.arch, m.pretrained) for m in spec.models}  # no build, no fetch
    assert kinds == {"ViT-B-16-SigLIP2": "tag", "EVA02-B-16": "tag", "ViT-H-14-quickgelu": "tag",
                     "hf:openai/clip-vit-base-patch16": "hf"}
    assert len(spec.models) == 5 and spec.llm.backend == "openai"
    monkeypatch.setenv("HF_CLIP", "/models/my-finetune")
    assert load_spec("beyond_grid").models[-1].arch == "hf:/models/my-finetune"
    # null: a tag the architecture never had is refused the same way
    with pytest.raises(UserError, match="unknown pretrained tag 'dfn5b' for EVA02-B-16"):
        check_model_names("EVA02-B-16", "dfn5b")


def test_an_hf_folder_is_relative_to_the_spec_and_a_hub_id_stays(tmp_path, monkeypatch):
    (tmp_path / "models" / "ft").mkdir(parents=True)
    spec = _write(tmp_path, "run: x\nmodels: [{arch: 'hf:models/ft'}, {arch: 'hf:openai/clip-vit-base-patch16'}]\n")
    monkeypatch.chdir(tmp_path.parent)  # the job is started elsewhere
    assert [m.arch for m in load_spec(spec).models] == [f"hf:{tmp_path / 'models' / 'ft'}", "hf:openai/clip-vit-base-patch16"]


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


def test_every_problem_is_reported_on_one_line(tmp_path):
    text = "run: 'bad name!'\nmodels: [{arch: ViT-B-32}]\nllm: {backend: claude}\nspans: {m: 0}\nprobe: {imgs: x}\n"
    with pytest.raises(UserError) as e:
        load_spec(_write(tmp_path, text))
    msg = str(e.value)
    assert "\n" not in msg and msg.count("; ") == 3 and "4 problems" in msg
    for fragment in ("run:", "llm.backend: got 'claude'", "spans.m:", "probe.imgs: unknown field"):
        assert fragment in msg


def test_real_datasets_need_a_data_root(tmp_path):
    with pytest.raises(UserError, match="evaluation.data_root: is required for real datasets"):
        load_spec(_write(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nevaluation: {tasks: [cifar10]}\n"))
    spec = load_spec(_write(tmp_path, "run: x\nmodels: [{arch: ViT-B-32}]\nevaluation: {tasks: [cifar10], synthetic: true}\n"),
                     {"cache_dir": str(tmp_path / "c")})
    assert spec.data_root == tmp_path / "c" / "synthetic-data"  # synthetic sets live in the cache


def test_paths_in_a_spec_are_relative_to_its_folder_not_the_current_one(tmp_path, monkeypatch):
    specs = tmp_path / "project" / "jobs"
    specs.mkdir(parents=True)
    path = _write(specs, "run: x\nmodels: [{arch: ViT-B-32, pretrained: ../weights/b32.pt}]\npool: ../pools/mine.txt\n"
                         "probe: {images: folder:../imgs}\nevaluation: {data_root: ../data, occupations: occ.txt,"
                         " tasks: [cifar10, folder@../shapes]}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load_spec(path)
    project = tmp_path / "project"
    assert spec.pool == str(project / "pools" / "mine.txt")
    assert spec.probe.images == f"folder:{project / 'imgs'}"
    assert spec.evaluation.data_root == str(project / "data") and spec.evaluation.occupations == str(specs / "occ.txt")
    assert spec.evaluation.tasks == ("cifar10", f"folder@{project / 'shapes'}")
    assert spec.models[0].pretrained == str(project / "weights" / "b32.pt")
    assert spec.out == str(elsewhere / "reports") and spec.cache_dir == str(elsewhere / "cache")  # outputs: here


def test_shipped_specs_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec()  # the demo
    assert spec.run == "demo" and spec.pool == "toy" and spec.probe.images == "toy:512"  # named, not paths
    assert spec.evaluation.occupations is None  # the paper's 104, shipped with the package
    monkeypatch.setenv("DATA_ROOT", "/data")
    assert load_spec("paper_grid").pool == "image_descriptions_general"
    with pytest.raises(UserError, match="shipped spec: beyond_grid, demo, local_gpu, paper_grid, planted"):
        load_spec("no_such_spec")


def test_no_shipped_file_points_outside_the_package():
    from ccs_dist.jobs.spec import SHIPPED_SPECS

    package = Path(ccs_dist.__file__).parent
    product = [*package.rglob("*.py"), *SHIPPED_SPECS.glob("*.yaml")]
    assert len(list(SHIPPED_SPECS.glob("*.yaml"))) >= 3 and len(product) > 50
    offenders = [str(p) for p in product if "../shared" in p.read_text(encoding="utf-8")]
    assert not offenders
