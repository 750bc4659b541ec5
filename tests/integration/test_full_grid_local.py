"""The full-grid job in local mode: the demo end to end, resume, --force, a SIGKILLed driver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest

from ccs_dist.llm.cache import AnswerCache
from tests.support.loopback import LoopbackConfig, LoopbackServer
from tests.support.paths import REPO
from tests.support.jobs import job_env, read_tables, run_full_grid


@pytest.fixture
def demo_run(local_demo_run):
    return local_demo_run


def test_demo_end_to_end(demo_run):
    root, proc = demo_run
    run_dir = root / "reports" / "demo"
    tables = read_tables(run_dir)
    ccs = tables["ccs"]
    assert set(ccs["model"]) == {"ccs-toy/planted_v2", "ccs-toy/random-init"}
    assert ccs.filter(pl.col("model") == "ccs-toy/planted_v2").height == 16
    assert ccs.filter(pl.col("model") == "ccs-toy/random-init").height == 16
    at_k = tables["ccs_at_k"].group_by("model").agg(pl.col("fraction").sum())
    assert all(abs(f - 1) < 1e-9 for f in at_k["fraction"])
    ev = tables["evaluation"]
    toy_tasks = {f"toy-{f}" for f in ("colour", "shape", "position", "size", "texture")}
    assert toy_tasks | {"msrvtt"} <= set(ev["task"]) and any(t.startswith("fairface") for t in ev["task"])
    assert {"original", "high", "low", "random", "random:mean", "random:std", "concept:colour"} <= set(ev["condition"])
    assert tables["ground_truth"].height == 2 * 16 * 5
    outcomes = tables["toy_outcomes"]
    learned = outcomes.filter((pl.col("outcome") == 1) & (pl.col("model") == "ccs-toy/planted_v2"))
    assert learned.height == 5 and learned["passed"].all()  # the bundled model learned its world
    untrained = outcomes.filter((pl.col("outcome") == 1) & (pl.col("model") == "ccs-toy/random-init"))
    assert untrained.height == 5 and not untrained["passed"].any()
    assert set(outcomes["outcome"]) == {1, 2, 3, 4}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["mode"] == "local" and [m["random_init"] for m in manifest["models"]] == [False, True]
    assert "Ground truth" in (run_dir / "index.html").read_text(encoding="utf-8")
    stages = ("spans", "score", "evaluate", "direct", "attribution", "card")  # the demo enables the optional attribution and card stages
    checks = tables["benchmark_checks"]  # the planted-concept benchmark: every check with its null, both models
    assert {"ccs-toy/planted_v2", "ccs-toy/random-init", "seeds:ccs-toy/planted_v2"} == set(checks["model"])
    control = checks.filter((pl.col("model") == "ccs-toy/random-init") & pl.col("check").str.starts_with("ground truth"))
    assert control.height == 2 and not control["passed"].any()  # nothing was planted in the control
    assert {(s["model"], s["stage"]) for s in manifest["stages"]} == {(m, s) for m in ccs["model"].unique() for s in stages}
    attribution = tables["attribution"]  # the table `ccs-dist attribute` writes, one task for every model
    assert set(attribution["model"]) == set(ccs["model"]) and set(attribution["dataset"]) == {"toy-colour"}
    assert list(attribution.columns) == ["model", "dataset", "class", "layer", "head", "method", "value", "n_images"]
    exact = attribution.filter(pl.col("class").is_null() & (pl.col("method") == "exact"))
    assert exact.height == 2 * 16 and exact["n_images"].to_list() == [16] * 32  # demo: samples 16, every head
    assert {"attribution_curves", "attribution_faithfulness", "attribution_reliance"} <= set(tables)
    assert (run_dir / "index.html").is_file()
    assert f"report: {run_dir / 'index.html'}" in proc.stdout
    assert "RANDOM INIT" in proc.stdout


def test_rerun_reuses_every_stage_and_force_recomputes_downstream(demo_run):
    root, _ = demo_run
    run_dir = root / "reports" / "demo"
    before = read_tables(run_dir)
    args = ("--local", "--quiet", "--out", str(root / "reports"), "--cache-dir", str(root / "cache"))
    again = run_full_grid(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("reused from") >= 8 and "stage spans done" not in again.stderr
    assert "stage attribution done" not in again.stderr
    forced = run_full_grid(*args, "--force", "score")
    assert forced.returncode == 0, forced.stderr[-3000:]
    assert "stage score done" in forced.stderr and "stage evaluate done" in forced.stderr
    assert "stage attribution done" in forced.stderr  # it reads the ccs table
    assert "stage spans done" not in forced.stderr
    after = read_tables(run_dir)
    assert set(after) == set(before)
    for name in before:
        assert after[name].equals(before[name]), name


def test_invalid_invocations_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: x\nmodels: [{arch: ViT-B-32}]\nllm: {backend: claude}\n")
    no_occupations = tmp_path / "occ.yaml"
    no_occupations.write_text("run: x\nmodels: [{arch: ccs-tiny}]\nevaluation: {synthetic: true, tasks: [fairface], "
                              "occupations: occupations.txt}\n")
    for args, fragment in [
        (("--spec", str(bad)), "llm.backend: got 'claude'"),
        (("--local", "--spec", str(no_occupations)), f"occupation list {tmp_path / 'occupations.txt'} not found"),
        (("--spec", str(tmp_path / "missing.yaml")), "not found"),
        (("--local", "--force", "everything"), "--force everything: unknown stage"),
    ]:
        proc = run_full_grid(*args, "--out", str(tmp_path / "o"))
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        assert proc.returncode == 2 and len(errors) == 1 and fragment in errors[0], proc.stderr[-2000:]


SMALL_SPEC = """
run: killed
out: {out}
cache_dir: {cache}
models:
  - {{arch: ccs-tiny, pretrained: none, layers: 2, rank: 16}}
probe: {{images: "synthetic:24", batch_size: 12, workers: 0}}
llm:
  backend: openai
  judge_gold_pairs: 0  # the counts below are the heads' requests only
  labeler: {{model: loopback-1, base_url: "{url}", rpm: 6000, max_concurrency: 2, max_attempts: 3, timeout_s: 5}}
  judges:
    - {{model: loopback-1, base_url: "{url}", rpm: 6000, max_concurrency: 2, max_attempts: 3, timeout_s: 5}}
resources: {{device: cpu}}
"""


def test_driver_killed_during_llm_stage_resumes_without_repeating_requests(tmp_path):
    with LoopbackServer(LoopbackConfig(latency_s=0.15)) as server:
        spec = tmp_path / "spec.yaml"
        spec.write_text(SMALL_SPEC.format(out=tmp_path / "reports", cache=tmp_path / "cache", url=server.base_url))
        env = job_env(OPENAI_API_KEY="sk-test-not-a-real-key-000000000000")
        args = [sys.executable, "-m", "ccs_dist.jobs.full_grid", "--local", "--quiet", "--spec", str(spec)]
        driver = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        while server.stats.answered < 12 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.05)
        assert driver.poll() is None, "the job ended before it could be killed: " + driver.stdout.read()[-2000:]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        sent_before = server.stats.requests
        assert 12 <= sent_before < 48  # 8 heads x (1 label + 5 verdicts) when complete
        cache = AnswerCache(tmp_path / "cache" / "llm")
        cached_before = len(cache)
        cache.close()
        assert cached_before >= 10
        rerun = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert "stage spans reused" in rerun.stderr.replace("ccs-tiny/random-init: ", "")
        stats = server.stats.as_dict()
        # Every answer that reached the cache before the kill is reused: the re-run asks exactly the rest.
        assert server.stats.requests - sent_before == stats["distinct_payloads"] - cached_before, stats
        # Only requests in flight at the instant of the kill (their answers never arrived) are sent again,
        # at most the two endpoints' concurrency (2 + 2).
        repeats = sum(n - 1 for n in server.stats.payloads.values())
        assert repeats <= 4 and stats["max_repeats"] <= 2, stats
        assert stats["distinct_payloads"] == 48 - _shared_questions(tmp_path)
    tables = read_tables(tmp_path / "reports" / "killed")
    assert tables["ccs"].height == 8 and tables["judgments"]["aligned"].null_count() == 0


def _shared_questions(tmp_path) -> int:
    """Identical (description, label) questions are asked once: count the repeats in the judgments."""
    j = pl.read_parquet(tmp_path / "reports" / "killed" / "tables" / "judgments.parquet")
    return j.height - j.select("text", "label").n_unique()
