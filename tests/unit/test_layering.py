"""The package reads top-down: every module's imports (lazy ones inside functions included) stay in its layer or below.

Layers, lowest first (a module may import its own layer and any lower one, never a higher one):

0. foundation: errors, log, store, storage, schemas, heads, weights, axes, protocol: contracts with no science
1. inputs: models (the image tower), text (description pools, text embeddings), data (probe sets, task
   loaders, synthetic writers, metadata), the probe-image loader and device decoder, the toy world's
   definitions and writers
2. per-head science: decompose (and its stream, shard writer, moments), textspan, span_stability, spans,
   ccs, head_images, toy training
3. labelling and head sets: llm, head_sets, toy ground truth and outcomes
4. evaluate (soft-pruned task metrics)
5. attribution (maths and driver; uses evaluate's task parsing)
6. report (reads every table)
7. the flat API (``ccs_dist/__init__``)
8. stages (one config + function per stage, and the chain written once)
9. distributed (Ray actors that run the stages)
10. jobs (job specs, local mode, the Ray driver)
11. cli (commands; ``python -m ccs_dist.jobs.full_grid`` is the one entry point that hands over to it)

``ccs_dist.testing`` (test and bench helpers) sits outside the order: it may import anything, and no
other module may import it. The library (layers 0-7) never imports stages, cli, jobs, distributed or
testing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ccs_dist"

LAYERS: list[tuple[str, ...]] = [
    ("ccs_dist.errors", "ccs_dist.log", "ccs_dist.store", "ccs_dist.storage", "ccs_dist.schemas", "ccs_dist.heads", "ccs_dist.weights",
     "ccs_dist.axes", "ccs_dist.protocol"),
    ("ccs_dist.models", "ccs_dist.text", "ccs_dist.data", "ccs_dist.toy.world", "ccs_dist.toy.data", "ccs_dist.toy.pool",
     "ccs_dist.loader", "ccs_dist.device_decode"),
    ("ccs_dist.decompose", "ccs_dist.decompose_stream", "ccs_dist.shard_writer", "ccs_dist.moments",
     "ccs_dist.textspan", "ccs_dist.span_stability", "ccs_dist.spans", "ccs_dist.ccs", "ccs_dist.head_images",
     "ccs_dist.toy.planted", "ccs_dist.toy.train"),
    ("ccs_dist.llm", "ccs_dist.head_sets", "ccs_dist.toy.ground_truth", "ccs_dist.toy.outcomes", "ccs_dist.toy"),
    ("ccs_dist.evaluate",),
    ("ccs_dist.attribution",),
    ("ccs_dist.report",),
    ("ccs_dist",),
    ("ccs_dist.stages",),
    ("ccs_dist.distributed",),
    ("ccs_dist.jobs",),
    ("ccs_dist.cli",),
]
TOP_LAYERS = ("ccs_dist.stages", "ccs_dist.cli", "ccs_dist.jobs", "ccs_dist.distributed", "ccs_dist.testing")
LIBRARY_TOP = 7  # the flat API: layers 0..7 are the library
TESTING = "ccs_dist.testing"

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
    """Rank of the longest layer prefix naming ``module`` (None: testing, or not ours)."""
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    return rank


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


def test_every_module_has_a_layer():
    unplaced = [m for m in _modules() if _layer(m) is None and not m.startswith(TESTING)]
    assert not unplaced, f"give these modules a layer in LAYERS: {unplaced}"


def test_no_import_runs_up_a_layer():
    upward = sorted({(a, b) for a, b in _edges() if not a.startswith(TESTING) and not b.startswith(TESTING)
                     and _layer(b) is not None and _layer(b) > _layer(a)})
    assert set(upward) == ENTRY_POINTS, "upward imports (module -> higher layer): " + ", ".join(f"{a} -> {b}" for a, b in upward)


def test_library_never_imports_stages_cli_jobs_distributed_or_testing():
    bad = sorted({(a, b) for a, b in _edges() if not a.startswith(TESTING) and _layer(a) is not None and _layer(a) <= LIBRARY_TOP
                  and any(b == t or b.startswith(t + ".") for t in TOP_LAYERS)})
    assert not bad, bad


def test_product_never_imports_testing():
    bad = sorted({(a, b) for a, b in _edges() if not a.startswith(TESTING) and b.startswith(TESTING)})
    assert not bad, bad


def test_third_party_owners():
    bad = []
    for name, path in _modules().items():
        for imported in _imports(name, path):
            owners = OWNED_THIRD_PARTY.get(imported.split(".")[0])
            if owners is not None and not name.startswith((*owners, TESTING)):
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
    assert _layer("ccs_dist.cli.score") > _layer("ccs_dist.llm.score") > _layer("ccs_dist.spans")
    assert _layer("ccs_dist.stages.spans") > _layer("ccs_dist.report") and _layer("ccs_dist.cli.main") > _layer("ccs_dist.stages")


@pytest.mark.parametrize("modules", [
    ["ccs_dist", "ccs_dist.models", "ccs_dist.models.masked", "ccs_dist.decompose", "ccs_dist.textspan",
     "ccs_dist.text.embed", "ccs_dist.text.index", "ccs_dist.data.images", "ccs_dist.spans", "ccs_dist.attribution",
     "ccs_dist.attribution.maths", "ccs_dist.attribution.run", "ccs_dist.attribution.reliance", "ccs_dist.head_sets",
     "ccs_dist.evaluate", "ccs_dist.report"],
])
def test_compute_modules_import_with_ray_http_and_cli_blocked(modules):
    """At run time too: compute code imports with ray, HTTP clients, fire and the CLI blocked."""
    code = (
        "import sys\n"
        "for name in ('ray', 'openai', 'httpx', 'aiohttp', 'requests', 'fire', 'ccs_dist.cli', 'ccs_dist.jobs',\n"
        "             'ccs_dist.distributed', 'ccs_dist.stages', 'ccs_dist.testing'):\n"
        "    sys.modules[name] = None\n"
        f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        "import ccs_dist\nccs_dist.load_model, ccs_dist.decompose, ccs_dist.textspan, ccs_dist.encode_image_pruned\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
