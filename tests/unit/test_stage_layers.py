"""The package reads top-down: cli > jobs > distributed > stages > library. Every module's imports are
checked (function-level imports included), so a lazy import cannot close a cycle unseen."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ccs_dist"
LAYERS = ("cli", "jobs", "distributed", "stages")  # top to bottom; everything else is the library, below them
ENTRY_POINTS = {"ccs_dist.jobs.full_grid": {"ccs_dist.cli.full_grid"}}  # `python -m` entry: hands over to its command


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> int:
    """0 for cli ... 3 for stages, 4 for the library."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from ccs_dist import jobs` names a module
    return {m for m in found if m == "ccs_dist" or m.startswith("ccs_dist.")}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_layers_exist_and_the_scan_sees_every_module():
    assert {p.parent.name for p in MODULES} >= set(LAYERS) and len(MODULES) > 80


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_no_module_imports_a_layer_above_its_own(path):
    module = _module_name(path)
    allowed = ENTRY_POINTS.get(module, set())
    upward = sorted(m for m in _imports(path) if _layer(m) < _layer(module) and _is_module_of_layer(m)
                    and not any(m == a or m.startswith(f"{a}.") for a in allowed))
    assert not upward, f"{module} imports {upward}, above its layer ({LAYERS} over the library)"


def _is_module_of_layer(name: str) -> bool:
    return len(name.split(".")) > 1 and name.split(".")[1] in LAYERS


def test_the_check_catches_an_upward_import(tmp_path):
    """Negative control: the scan finds a function-level import of the job layer in a library module."""
    fake = PACKAGE / "models" / "_layer_probe_tmp.py"
    fake.write_text("def f():\n    from ccs_dist.jobs.pipeline import run_job\n    from ..stages import chain\n")
    try:
        found = _imports(fake)
    finally:
        fake.unlink()
    assert {"ccs_dist.jobs.pipeline", "ccs_dist.stages.chain"} <= found
    assert all(_layer(m) < _layer("ccs_dist.models._layer_probe_tmp") for m in ("ccs_dist.jobs.pipeline", "ccs_dist.stages.chain"))
