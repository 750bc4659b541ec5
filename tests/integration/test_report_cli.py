"""`ccs-dist report RUN_DIR [--out DIR]` as a user runs it."""

from __future__ import annotations

from tests.support.report_fixtures import FixtureSpec, make_run
from tests.support.cli import run_cli


def test_report_command_writes_and_prints_the_page(tmp_path):
    run = make_run(tmp_path / "run", FixtureSpec(tasks=("cifar10",)))
    out = tmp_path / "site"
    p = run_cli("report", str(run), "--out", str(out), timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == str(out / "index.html")
    assert (out / "index.html").stat().st_size > 10_000
    assert (run / "tables" / "ccs.csv").exists()


def test_report_command_bad_input_is_one_line(tmp_path):
    p = run_cli("report", str(tmp_path / "missing"), timeout=120)
    assert p.returncode == 2
    err = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "does not exist" in err[0]
    (tmp_path / "empty").mkdir()
    p = run_cli("report", str(tmp_path / "empty"), timeout=120)
    assert p.returncode == 2 and "no tables" in p.stderr
    p = run_cli("report", timeout=120)
    assert p.returncode == 2 and "report needs RUN_DIR" in p.stderr
