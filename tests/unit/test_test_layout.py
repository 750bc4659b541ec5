"""The tests' own layout: helpers live in tests/support only, no test module imports another test module or a
conftest, unit tests sit in the folder of the subpackage they test, and markers are used exactly as declared."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from tests.support.paths import REPO

TESTS = REPO / "tests"
PACKAGE = REPO / "ccs_dist"
BUILTIN_MARKS = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings"}
SLOW_FIXTURES = {"vit_b32"}  # conftest fixtures that build a real architecture at random init
# load_model("ViT-...", device=...) or load_model("ViT-...", None, ...): a real architecture at random init
RANDOM_INIT_VIT = re.compile(r"load_model\(\s*[\"']ViT-[^\"']*[\"']\s*,\s*(None\s*,\s*)?device=")


def _test_modules() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def _imported(tree: ast.AST) -> set[str]:
    """Every module an import statement names, ``from X import a`` giving X and X.a."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            names.add("." * node.level + (node.module or ""))  # relative: always into the tests tree
    return names


def forbidden_imports(path: Path) -> list[str]:
    """The imports of ``path`` that reach another test module or a conftest (helpers belong in tests.support)."""
    bad = []
    for name in sorted(_imported(ast.parse(path.read_text(), filename=str(path)))):
        parts = name.split(".")
        if name.startswith("."):
            bad.append(name)
        elif parts[0] == "conftest" or (parts[0] == "tests" and "conftest" in parts[1:]):
            bad.append(name)
        elif parts[0] == "tests" and not (len(parts) == 1 or parts[1] == "support"):
            bad.append(name)
        elif parts[0].startswith("test_"):
            bad.append(name)
    return bad


def test_no_test_module_imports_another_test_module_or_a_conftest():
    found = {str(p.relative_to(REPO)): bad for p in _test_modules() if (bad := forbidden_imports(p))}
    assert not found, f"move the shared helpers to tests/support (fixtures to conftest.py): {found}"


def test_the_import_check_catches_each_kind(tmp_path):
    cases = {
        "from tests.integration.test_llm_pool import make_spans\n": ["tests.integration.test_llm_pool",
                                                                     "tests.integration.test_llm_pool.make_spans"],
        "from tests.conftest import REPO\n": ["tests.conftest", "tests.conftest.REPO"],
        "import conftest\n": ["conftest"],
        "from test_score_cli import cli\n": ["test_score_cli", "test_score_cli.cli"],
        "from .test_x import y\n": [".test_x"],
        "def f():\n    from tests.ray import test_multinode_shards\n": ["tests.ray", "tests.ray.test_multinode_shards"],
        "from tests.support.cli import run_cli\nimport tests.support.paths\nfrom ccs_dist.cli import main\n": [],
    }
    for i, (source, want) in enumerate(cases.items()):
        f = tmp_path / f"test_case{i}.py"
        f.write_text(source)
        assert forbidden_imports(f) == want, source


def test_helpers_live_in_tests_support_only():
    strays = [str(p.relative_to(REPO)) for p in TESTS.rglob("*.py")
              if not p.name.startswith("test_") and p.name not in ("__init__.py", "conftest.py")
              and TESTS / "support" not in p.parents]
    assert not strays, f"helper modules outside tests/support: {strays}"
    assert not (PACKAGE / "testing").exists(), "test helpers are not shipped in the package"
    assert [p.relative_to(REPO) for p in TESTS.rglob("conftest.py")] == [Path("tests/conftest.py")]


def test_unit_tests_mirror_the_package_tree():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    unit = TESTS / "unit"
    folders = {p.name for p in unit.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= subpackages, f"tests/unit folders that are no subpackage of ccs_dist: {folders - subpackages}"
    for folder in folders:  # a package each, so that equal basenames in two folders do not clash
        assert (unit / folder / "__init__.py").is_file(), folder
        assert not [p for p in (unit / folder).iterdir() if p.is_dir() and p.name != "__pycache__"], folder
    for folder in ("unit", "integration", "ray", "gpu"):
        assert (TESTS / folder / "__init__.py").is_file(), folder


def _declared_markers() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--strict-markers" in config["addopts"].split()
    return {line.split(":")[0].strip() for line in config["markers"]}


def _mark_name(node: ast.AST) -> str | None:
    """``pytest.mark.NAME`` (called or not) in a decorator, a pytestmark or a ``pytest.param(marks=...)``."""
    if isinstance(node, ast.Call):
        node = node.func
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "mark"
            and isinstance(node.value.value, ast.Name) and node.value.value.id == "pytest"):
        return node.attr
    return None


def _used_markers(tree: ast.AST) -> set[str]:
    return {name for node in ast.walk(tree) if (name := _mark_name(node))} - BUILTIN_MARKS


def test_markers_are_used_as_declared():
    declared = _declared_markers()
    used = set().union(*(_used_markers(ast.parse(p.read_text())) for p in [*_test_modules(), TESTS / "conftest.py"]))
    assert used - declared == set(), f"used but not declared in pyproject.toml: {used - declared}"
    assert declared - used == set(), f"declared in pyproject.toml but never used: {declared - used}"
    assert _used_markers(ast.parse("@pytest.mark.slow\n@pytest.mark.parametrize('a', [pytest.param(1, marks=pytest.mark.gpu)])\n"
                                   "def test_x(a): pass\npytestmark = [pytest.mark.skipif(True, reason='')]\n")) == {"slow", "gpu"}


def _marks_of(fn: ast.FunctionDef, module_marks: set[str]) -> set[str]:
    return module_marks | {name for d in fn.decorator_list if (name := _mark_name(d))}


def test_tests_that_build_real_architectures_are_marked_slow_and_cuda_tests_gpu():
    unmarked = []
    for path in _test_modules():
        source = path.read_text()
        tree = ast.parse(source)
        module_marks = {name for node in tree.body if isinstance(node, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
                        for n in ast.walk(node.value) if (name := _mark_name(n))}
        if TESTS / "gpu" in path.parents and "gpu" not in module_marks:
            unmarked.append(f"{path.relative_to(REPO)}: gpu")
        for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")):
            args = {a.arg for a in fn.args.args}
            builds = args & SLOW_FIXTURES or RANDOM_INIT_VIT.search(ast.get_source_segment(source, fn) or "")
            if builds and "slow" not in _marks_of(fn, module_marks):
                unmarked.append(f"{path.relative_to(REPO)}::{fn.name}: slow")
    assert not unmarked, unmarked
