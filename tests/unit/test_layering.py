"""The package reads top-down, and the folders are the layers: every module's imports stay in its layer or below.

``LAYERS`` names the packages of ``ccs_dist/``, one line per layer, lowest first; packages on one line are
peers and may import each other. The root of ``ccs_dist/`` holds only ``__init__.py`` (the flat API, its own
layer) and ``__main__.py``. The one allowed upward import: ``python -m ccs_dist.jobs.full_grid`` hands over
to its command. Test and bench helpers live in ``tests/support``, outside the shipped package.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ccs_dist"

LAYER_LINES = """
core
artifacts
models text data
decomposition
spans
ccs
sae
llm
toy
evaluate
attribution
card
benchmark
report
__init__
stages
distributed
jobs
cli
"""
LAYERS: list[tuple[str, ...]] = [
    tuple("ccs_dist" if p == "__init__" else f"ccs_dist.{p}" for p in line.split()) for line in LAYER_LINES.split("\n") if line.strip()
]
TOP_LAYERS = ("ccs_dist.stages", "ccs_dist.cli", "ccs_dist.jobs", "ccs_dist.distributed")
LIBRARY_TOP = next(i for i, line in enumerate(LAYERS) if line == ("ccs_dist",))  # the flat API: layers up to it are the library

# Third-party imports owned by one layer each: Ray by distributed (and the job driver that starts it), the CLI
# parser by the cli layer.
OWNED_THIRD_PARTY = {"ray": ("ccs_dist.distributed", "ccs_dist.jobs"), "fire": ("ccs_dist.cli",)}

# The one allowed upward import: ``python -m ccs_dist.jobs.full_grid`` hands over to its command.
ENTRY_POINTS: set[tuple[str, str]] = {("ccs_dist.jobs.full_grid", "ccs_dist.cli.full_grid")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: dict[str, Path] | None = None) -> set[str]:
    """Every module name ``path`` imports, anywhere in the file (function bodies included).

    ``from pkg import name`` names ``pkg.name`` where that is a module of ``known`` (or ``known`` is None),
    else ``pkg``.
    """
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for a in node.names:
                sub = f"{module}.{a.name}"
                out.add(sub if known is None or sub in known else module)
    return out


def _layer(module: str) -> int | None:
    """Rank of the layer whose package holds ``module`` (None: not ours). The flat API's line holds only the
    root's own modules (``ccs_dist`` and ``ccs_dist.__main__``)."""
    if module in ("ccs_dist", "ccs_dist.__main__"):
        return LIBRARY_TOP
    for i, packages in enumerate(LAYERS):
        if any(p != "ccs_dist" and (module == p or module.startswith(p + ".")) for p in packages):
            return i
    return None


def _ours(imported: str, known: dict[str, Path]) -> str | None:
    """The ccs_dist module an import names (``from pkg import name`` of a non-module: the package)."""
    while imported and imported not in known:
        if "." not in imported:
            return None
        imported = imported.rsplit(".", 1)[0]
    return imported or None


def _edges() -> list[tuple[str, str]]:
    known = _modules()
    # names under the top layers count even where this tree lacks them
    edges = []
    for name, path in known.items():
        for imported in _imports(name, path, known):
            if not imported.startswith("ccs_dist"):
                continue
            target = _ours(imported, known) or next((t for t in TOP_LAYERS if imported.startswith(t)), None)
            if target and target != name:
                edges.append((name, target))
    return edges


def test_the_root_holds_only_the_flat_api_and_every_folder_is_a_layer():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"move these into the package of their pipeline step: {loose}"
    folders = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    listed = {p.split(".")[1] for line in LAYERS for p in line if p != "ccs_dist"}
    assert folders == listed, f"folders without a layer: {sorted(folders - listed)}; layers without a folder: {sorted(listed - folders)}"


def test_every_module_has_a_layer():
    unplaced = [m for m in _modules() if _layer(m) is None]
    assert not unplaced, f"give these modules a layer in LAYER_LINES: {unplaced}"


def test_no_import_runs_up_a_layer():
    upward = sorted({(a, b) for a, b in _edges() if _layer(b) is not None and _layer(b) > _layer(a)})
    assert set(upward) == ENTRY_POINTS, "upward imports (module -> higher layer): " + ", ".join(f"{a} -> {b}" for a, b in upward)


def _cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert _cycles(_edges()) == []


def test_the_cycle_finder_finds_a_cycle():
    """Negative control for the test above."""
    assert _cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]) == [["a", "b", "c"]]


def test_library_never_imports_stages_cli_jobs_or_distributed():
    bad = sorted({(a, b) for a, b in _edges() if _layer(a) is not None and _layer(a) <= LIBRARY_TOP
                  and any(b == t or b.startswith(t + ".") for t in TOP_LAYERS)})
    assert not bad, bad


def test_product_never_imports_test_support():
    bad = sorted((name, imported) for name, path in _modules().items() for imported in _imports(name, path)
                 if imported.split(".")[0] == "tests")
    assert not bad, bad


def test_third_party_owners():
    bad = []
    for name, path in _modules().items():
        for imported in _imports(name, path):
            owners = OWNED_THIRD_PARTY.get(imported.split(".")[0])
            if owners is not None and not name.startswith(owners):
                bad.append((name, imported))
    assert not bad, bad


def test_the_checker_sees_lazy_relative_and_from_imports(tmp_path):
    """Negative control: the parser finds imports hidden in function bodies and relative imports."""
    pkg = tmp_path / "ccs_dist" / "llm"
    pkg.mkdir(parents=True)
    src = pkg / "x.py"
    src.write_text("def f():\n    from ..jobs import spec\n    from . import score\n    import ccs_dist.cli\n")
    found = _imports("ccs_dist.llm.x", src)
    assert {"ccs_dist.jobs.spec", "ccs_dist.llm.score", "ccs_dist.cli"} <= found
    assert _layer("ccs_dist.llm.x") < _layer("ccs_dist.jobs.spec")
    assert _layer("ccs_dist.cli.score") > _layer("ccs_dist.llm.score") > _layer("ccs_dist.spans.table")
    assert _layer("ccs_dist.stages.spans") > _layer("ccs_dist.report") and _layer("ccs_dist.cli.main") > _layer("ccs_dist.stages")


@pytest.mark.parametrize("modules", [
    ["ccs_dist", "ccs_dist.models", "ccs_dist.models.masked", "ccs_dist.decomposition.image_set", "ccs_dist.spans.textspan",
     "ccs_dist.text.embed", "ccs_dist.text.index", "ccs_dist.data.images", "ccs_dist.spans.table", "ccs_dist.attribution",
     "ccs_dist.attribution.maths", "ccs_dist.attribution.run", "ccs_dist.attribution.reliance", "ccs_dist.ccs.head_sets",
     "ccs_dist.evaluate", "ccs_dist.report"],
])
def test_compute_modules_import_with_ray_http_and_cli_blocked(modules):
    """At run time too: compute code imports with ray, HTTP clients, fire and the CLI blocked."""
    code = (
        "import sys\n"
        "for name in ('ray', 'openai', 'httpx', 'aiohttp', 'requests', 'fire', 'ccs_dist.cli', 'ccs_dist.jobs',\n"
        "             'ccs_dist.distributed', 'ccs_dist.stages', 'tests.support'):\n"
        "    sys.modules[name] = None\n"
        f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        "import ccs_dist\nccs_dist.load_model, ccs_dist.decompose, ccs_dist.textspan, ccs_dist.encode_image_pruned\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
