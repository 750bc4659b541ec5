"""The README and docs/ say only what holds: their commands' flags exist, their paths and links resolve, the
README's layout tree is the package's layers, and the three commands a newcomer relies on are the ones CI runs.

Python blocks are run by ``test_readme.py``. Here each ``ccs-dist`` / ``python -m ccs_dist.jobs.full_grid``
command of a ```bash block or an inline code span is checked against its ``--help`` (flags spelt with dashes
or underscores alike); benchmark commands against their script; paths against the tree.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README = (REPO / "README.md").read_text(encoding="utf-8")

# The three commands a newcomer relies on, exactly (CI's .ci/run runs them).
INSTALL = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'"
MAIN_JOB = ".venv/bin/python -m ccs_dist.jobs.full_grid"
TESTS = ".venv/bin/python -m pytest -q"

# Paths that exist only in an installed package (setup.py maps jobs/ there).
INSTALLED_ONLY = {"ccs_dist/job_specs"}


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _rel(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}")
    end = text.find("\n## ", start + 1)
    return text[start: end if end >= 0 else len(text)]


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.M | re.S)


# ---------------------------------------------------------------- commands


def _commands(page: Path) -> list[str]:
    """Every shell command of a page: bash blocks (continuations joined, comments dropped, ``&&`` split) and
    inline code spans that start like a command of ours."""
    text = _text(page)
    out = []
    for block in _blocks(text, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            out.extend(part.strip() for part in line.split("&&") if part.strip())
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        if re.match(r"(\.venv/bin/)?(ccs-dist \S|python -m ccs_dist\.jobs\.full_grid\b)", span):
            out.append(span)
    return out


COMMANDS = [(_rel(p), c) for p in PAGES for c in _commands(p)]


def _flags(tokens: list[str]) -> set[str]:
    return {t[2:].split("=", 1)[0].replace("_", "-") for t in tokens if t.startswith("--") and len(t) > 2}


@functools.lru_cache(maxsize=None)
def _help(*argv: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PAGER": "cat"}
    proc = subprocess.run([sys.executable, *argv, "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(argv)} --help failed:\n{proc.stderr[-2000:]}"
    return proc.stdout + proc.stderr


def _help_flags(*argv: str) -> set[str]:
    return {f.replace("_", "-") for f in re.findall(r"--([a-z][a-z0-9_-]*)", _help(*argv))}


def _subcommands() -> set[str]:
    return set(re.findall(r"^  ([a-z][a-z-]+)\s", _help("-m", "ccs_dist.cli"), flags=re.M))


def _check(tokens: list[str]) -> None:
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):  # VAR=value prefixes
        tokens = tokens[1:]
    if not tokens:
        return
    prog = tokens[0].removeprefix(".venv/bin/")
    if prog == "ray":
        assert "--" in tokens, "a ray command of ours hands over after --"
        _check(tokens[tokens.index("--") + 1:])
    elif prog == "ccs-dist":
        sub = tokens[1] if len(tokens) > 1 and not tokens[1].startswith("-") else None
        if sub is None:
            return
        if sub.isupper():  # ccs-dist COMMAND --help: a placeholder
            return
        assert sub in _subcommands(), f"no command ccs-dist {sub}: {sorted(_subcommands())}"
        unknown = _flags(tokens) - _help_flags("-m", "ccs_dist.cli", sub) - {"help"}
        assert not unknown, f"ccs-dist {sub} has no flags {sorted(unknown)}"
    elif prog in ("python", "python3") and tokens[1:3] == ["-m", "ccs_dist.jobs.full_grid"]:
        unknown = _flags(tokens) - _help_flags("-m", "ccs_dist.jobs.full_grid") - {"help"}
        assert not unknown, f"python -m ccs_dist.jobs.full_grid has no flags {sorted(unknown)}"
        if "--spec" in tokens:
            from ccs_dist.jobs.spec import shipped_specs

            spec = tokens[tokens.index("--spec") + 1]
            assert spec in shipped_specs() or (REPO / spec).is_file(), f"no spec {spec}"
    elif prog in ("python", "python3") and len(tokens) > 1 and tokens[1].endswith(".py"):
        script = REPO / tokens[1]
        assert script.is_file(), f"no script {tokens[1]}"
        source = script.read_text(encoding="utf-8")
        missing = {f for f in _flags(tokens) if f'"--{f}"' not in source and f"'--{f}'" not in source}
        assert not missing, f"{tokens[1]} takes no flags {sorted(missing)}"
    elif prog in ("python", "python3") and tokens[1:3] == ["-m", "pytest"]:
        for arg in tokens[3:]:
            if not arg.startswith("-"):
                assert (REPO / arg.split("::")[0]).exists(), f"no test path {arg}"
    elif prog == "bash":
        assert (REPO / tokens[1]).is_file(), f"no script {tokens[1]}"
    # python3 -m venv, pip install: the install, run by CI and test_package.py


def test_every_page_has_commands():
    assert {p for p, _ in COMMANDS} >= {"README.md"}


@pytest.mark.parametrize("page,command", COMMANDS, ids=[f"{p}:{c[:60]}" for p, c in COMMANDS])
def test_command_names_only_what_exists(page, command):
    _check(shlex.split(command))


def test_the_command_checker_catches_a_wrong_flag_and_command():
    """Negative control for the test above."""
    with pytest.raises(AssertionError, match="no flags"):
        _check(shlex.split("ccs-dist textspan --no-such-flag 3"))
    with pytest.raises(AssertionError, match="no command"):
        _check(shlex.split("ccs-dist no-such-command"))
    with pytest.raises(AssertionError, match="no flags"):
        _check(shlex.split("ray job submit -- python -m ccs_dist.jobs.full_grid --no-such-flag"))


# ---------------------------------------------------------------- the newcomer's three commands


def test_one_install_one_main_job_one_test_command_as_ci_runs_them():
    assert _blocks(_section(README, "Set up"), "bash")[0].strip() == INSTALL
    assert _blocks(_section(README, "Run the main job"), "bash")[0].strip() == MAIN_JOB
    assert _blocks(_section(README, "Run the tests"), "bash")[0].strip() == TESTS
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert TESTS in ci and "-m ccs_dist.jobs.full_grid" in ci and ".venv/bin/pip install -q -e '.[test]'" in ci
    assert re.search(r"ray job submit .*-- \\?\s*python -m ccs_dist\.jobs\.full_grid", README, flags=re.S)
    assert README.index("## Run the tests") < README.index("## Layout")


# ---------------------------------------------------------------- paths and links


def _paths(page: Path) -> list[str]:
    found = re.findall(r"(?<![\w/.:-])((?:ccs_dist|jobs|bench|tests|tools|docs|\.ci)/[\w./<>*-]*)", _text(page))
    return sorted({p.rstrip(".,") for p in found if not any(c in p for c in "<>*")})


def test_every_path_named_exists():
    missing = [(_rel(page), p) for page in PAGES for p in _paths(page)
               if p.rstrip("/") not in INSTALLED_ONLY and not (REPO / p).exists()]
    assert not missing, missing


def _slug(heading: str) -> str:
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def test_every_link_resolves():
    bad = []
    for page in PAGES:
        for target, anchor in re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", _text(page)):
            if re.match(r"[a-z]+://", target):
                continue
            path = (page.parent / target).resolve()
            if not path.exists():
                bad.append((_rel(page), target))
            elif anchor and anchor not in {_slug(h) for h in re.findall(r"^#+ (.*)$", path.read_text(encoding="utf-8"), flags=re.M)}:
                bad.append((_rel(page), f"{target}#{anchor}"))
    assert not bad, bad


def test_the_readme_links_every_docs_page():
    unlinked = [p.name for p in PAGES[1:] if f"](docs/{p.name})" not in README]
    assert not unlinked, unlinked


def _defined(module: Path, name: str) -> bool:
    source = module.read_text(encoding="utf-8")
    return bool(re.search(rf"^(?:def|class) {name}\b|^{name}\s*[:=]|^\s+\"{name}\":", source, flags=re.M))


def test_every_dotted_name_resolves():
    bad = []
    for page in PAGES:
        for dotted in sorted(set(re.findall(r"\bccs_dist(?:\.\w+)+", _text(page)))):
            parts = dotted.split(".")
            if ".".join(parts[:2]) in ("ccs_dist.job_specs",):
                continue
            for n in range(len(parts), 0, -1):
                base = REPO.joinpath(*parts[:n])
                module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
                if module.is_file():
                    rest = parts[n:]
                    if len(rest) > 1 or (rest and not _defined(module, rest[0])):
                        bad.append((_rel(page), dotted))
                    break
            else:
                bad.append((_rel(page), dotted))
    assert not bad, bad


# ---------------------------------------------------------------- the layout tree is the layers


def _layer_packages() -> list[str]:
    """LAYER_LINES of tests/unit/test_layering.py, read with ast (test modules never import each other),
    flattened: one package a name, lowest first."""
    tree = ast.parse((REPO / "tests" / "unit" / "test_layering.py").read_text(encoding="utf-8"))
    value = next(node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "LAYER_LINES" for t in node.targets))
    return value.split()


def _layout_tree(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The README's layout block: the packages under ``ccs_dist/`` in order, and every other top-level entry
    with its children."""
    block = _blocks(_section(text, "Layout"), "")[0]
    package: list[str] = []
    top: dict[str, list[str]] = {}
    current = None
    for line in block.splitlines():
        m = re.match(r"^( *)(\S+)", line)
        if not m:
            continue
        indent, name = len(m.group(1)), m.group(2)
        if indent == 0:
            current = name
            top[name] = []
        elif indent == 2 and current == "ccs_dist/":
            package.append(name.removesuffix("/").removesuffix(".py"))
        elif indent == 2 and current is not None:
            top[current].append(name)
    return package, top


def _layout_disagreements(tree: list[str], layers: list[str], folders: set[str]) -> list[str]:
    out = []
    if tree != layers:
        out.append(f"README layout {tree} != LAYER_LINES {layers}")
    if set(layers) - {"__init__"} != folders:
        out.append(f"LAYER_LINES {sorted(set(layers) - {'__init__'})} != folders {sorted(folders)}")
    return out


def test_the_readme_layout_tree_is_the_layers_lowest_first():
    folders = {p.parent.name for p in (REPO / "ccs_dist").glob("*/__init__.py")}
    package, _ = _layout_tree(README)
    assert _layout_disagreements(package, _layer_packages(), folders) == []


def test_the_layout_checker_sees_a_swap():
    """Negative control: two packages swapped, or a folder the layers lack, is a disagreement."""
    layers = ["core", "artifacts", "models"]
    assert _layout_disagreements(["artifacts", "core", "models"], layers, {"core", "artifacts", "models"})
    assert _layout_disagreements(layers, layers, {"core", "artifacts", "models", "extra"})
    assert not _layout_disagreements(layers, layers, {"core", "artifacts", "models"})


def test_the_readme_layout_tree_names_the_top_level():
    _, top = _layout_tree(README)
    assert {"ccs_dist/", "jobs/", "bench/", "tests/", "docs/", "cache/", "reports/"} <= set(top)
    for name in top:
        if name not in ("cache/", "reports/"):  # git-ignored, written by a run
            assert (REPO / name).exists(), name
    subfolders = {p.name + "/" for p in (REPO / "tests").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert set(top["tests/"]) == subfolders
