"""The one way tests run the ``ccs-dist`` command: ``python -m ccs_dist.cli ARGS`` in a subprocess, as a user would.

A test that is about a particular entry point (the installed console script, ``python -m ccs_dist.jobs.full_grid``)
runs that entry point itself and says so; every other test runs the command through :func:`run_cli`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.paths import REPO


def cli_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment for a CLI run: this checkout first on PYTHONPATH, unbuffered output, no
    OPENAI_API_KEY inherited from the developer's shell (a test that wants a key passes it in ``env``)."""
    full = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    full["PYTHONUNBUFFERED"] = "1"
    full.update(env or {})
    return full


def run_cli(*args: str, cwd: Path | str | None = None, env: Mapping[str, str] | None = None, timeout: float = 600,
            wrap: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """Run ``python -m ccs_dist.cli ARGS`` from ``cwd`` (default: the repository); returns the CompletedProcess.

    ``env`` adds to (and overrides) :func:`cli_env`; ``wrap`` is a command prefix the CLI runs under
    (e.g. ``unshare ... sh -c '...' sh``)."""
    return subprocess.run([*wrap, sys.executable, "-m", "ccs_dist.cli", *args], cwd=cwd or REPO, env=cli_env(env),
                          capture_output=True, text=True, timeout=timeout)


def one_line_error(p: subprocess.CompletedProcess, pattern: str) -> None:
    """The command failed as a user error should: exit 2, exactly one ``error:`` line holding ``pattern``, no traceback."""
    assert p.returncode == 2, p.stderr[-1500:]
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errs) == 1 and pattern in errs[0], p.stderr[-1500:]
    assert "Traceback" not in p.stderr
