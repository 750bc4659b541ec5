"""One axis legend: every shape-suffixed name in the package uses letters of ``ccs_dist.core.axes``, no module has its own."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ccs_dist.core.axes import LEGEND

PACKAGE = Path(__file__).resolve().parents[2] / "ccs_dist"
SHAPED = re.compile(r"^[a-z][a-z0-9_]*_(?=[A-Z0-9]*[A-Z])([A-Z0-9]+)$")  # keep_BH11, heads_BLHE, images_B3WW


def _shaped_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
    return {n for n in names if SHAPED.match(n)}


def test_every_shape_letter_is_in_the_one_legend():
    bad = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for name in _shaped_names(path):
            unknown = {c for c in SHAPED.match(name).group(1) if c.isalpha() and c not in LEGEND}
            if unknown:
                bad.setdefault(str(path.relative_to(PACKAGE)), []).append(name)
    assert not bad, bad




def test_no_module_keeps_its_own_legend():
    own = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
           if "Axis legend:" in p.read_text(encoding="utf-8") and p.name != "axes.py"}
    assert not own, f"point these modules at ccs_dist.core.axes: {sorted(own)}"


def test_the_legend_has_one_meaning_per_letter_and_the_checker_sees_names():
    assert all(len(k) == 1 and k.isupper() for k in LEGEND) and len(set(LEGEND.values())) == len(LEGEND)
    assert SHAPED.match("keep_BH11") and SHAPED.match("images_B3WW") and not SHAPED.match("occupations_104")
