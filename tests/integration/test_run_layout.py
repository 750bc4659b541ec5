"""One output layout for every command: each writes RUN/tables/*.parquet, reads a run directory, and
`ccs-dist report RUN` works after any of them; `ccs-dist --help` lists the commands."""

from __future__ import annotations

import stat

import polars as pl

from tests.support.cli import run_cli


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _report_lists(run, tmp_path, tables: set[str]) -> None:
    page = _ok(run_cli("report", str(run), "--out", str(tmp_path / f"page-{len(tables)}"), cwd=tmp_path / "cwd",
                       timeout=180)).stdout.strip()
    assert page.endswith("index.html")
    assert {p.stem for p in (run / "tables").glob("*.parquet")} == tables


def test_commands_share_one_run_directory(tmp_path):
    from ccs_dist.data import synthetic

    run, cache, data = tmp_path / "run", tmp_path / "cache", tmp_path / "data"
    cwd = tmp_path / "cwd"  # every command runs here; nothing may land here
    cwd.mkdir()
    _ok(run_cli("textspan", "--model", "ccs-tiny", "--images", "synthetic:16", "--layers", "2", "--rank", "16",
                "--cache-dir", str(cache), "--out", str(run), "--workers", "0", cwd=cwd))
    _report_lists(run, tmp_path, {"spans"})

    _ok(run_cli("score", "--spans", str(run), "--out", str(run), "--backend", "offline", "--cache-dir", str(cache),
                "--progress=False", cwd=cwd))
    _report_lists(run, tmp_path, {"spans", "labels", "judgments", "ccs", "ccs_at_k", "judge_validation"})

    synthetic.write_all(data, ["cifar10"])
    _ok(run_cli("evaluate", "--model", "ccs-tiny", "--tasks", "cifar10", "--data-root", str(data), "--ccs", str(run),
                "--out", str(run), "--seeds", "0", "--templates-per-class", "1", "--limit", "20", cwd=cwd))
    _report_lists(run, tmp_path, {"spans", "labels", "judgments", "ccs", "ccs_at_k", "judge_validation", "evaluation"})
    ev = pl.read_parquet(run / "tables" / "evaluation.parquet")
    assert {"original", "high", "low"} <= set(ev["condition"])

    assert not any(cwd.iterdir()), list(cwd.iterdir())
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (run / "tables").iterdir()}
    modes.update({p.name: stat.S_IMODE(p.stat().st_mode) for p in run.glob("*.json")})
    assert len(set(modes.values())) == 1, modes  # tables, manifests and CSVs alike
    assert next(iter(modes.values())) & 0o644 == 0o644, modes


def test_help_lists_the_commands_and_unknown_commands_say_so():
    for flag in ("--help", "-h"):
        proc = _ok(run_cli(flag))
        for command in ("decompose", "textspan", "score", "agreement", "evaluate", "attribute", "report"):
            assert f"  {command} " in proc.stdout, proc.stdout
    bad = run_cli("frobnicate")
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert bad.returncode == 2 and len(errors) == 1 and "unknown command 'frobnicate'" in errors[0] and "textspan" in errors[0]


def test_evaluate_needs_a_data_root_not_the_current_directory(tmp_path):
    proc = run_cli("evaluate", "--model", "ccs-tiny", "--tasks", "cifar10", "--out", str(tmp_path), cwd=tmp_path)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "--data-root" in errors[0]


def test_a_redirected_log_is_plain_lines(tmp_path):
    proc = _ok(run_cli("textspan", "--model", "ccs-tiny", "--images", "synthetic:8", "--layers", "1", "--rank", "8",
                       "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--workers", "0"))
    log = proc.stderr  # a pipe, as in `... 2> run.log`
    assert "\r" not in log and "\x1b[" not in log  # no progress bars, no colour codes
    assert sum("pretrained weights" in line for line in log.splitlines()) == 1, log  # said once, by us
    assert "RANDOM INIT: ccs-tiny has no pretrained weights (seed 0)" in log
    scored = _ok(run_cli("score", "--spans", str(tmp_path / "run"), "--out", str(tmp_path / "run"), "--backend", "offline",
                         "--cache-dir", str(tmp_path / "cache")))  # loads the offline judge's weights
    assert "\r" not in scored.stderr and "\x1b[" not in scored.stderr, scored.stderr[-2000:]
