"""``ccs-dist judge-check``: the shipped gold pairs scored by the offline judge and by an endpoint (a real loopback
HTTP server that records what it receives), in one command each; answers cached so a second check asks nothing."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from ccs_dist.ccs.verdict_stats import verdict_agreement
from ccs_dist.llm.gold import load_gold_pairs, sample_gold
from tests.support.cli import one_line_error, run_cli
from tests.support.llm_spans import KEY
from tests.support.loopback import LoopbackConfig, LoopbackServer, reference_verdict


def _judged(body: bytes) -> tuple[str, str]:
    """(description, label) of one pair-judge request as the server received it."""
    req = json.loads(body)
    assert req["model"] == "loopback-1"
    user = [m["content"] for m in req["messages"] if m["role"] == "user"][-1].splitlines()
    label = json.loads(next(ln[len("Label:"):].strip() for ln in user if ln.startswith("Label:")))
    desc = next(ln[len("Description:"):].strip() for ln in user if ln.startswith("Description:"))
    return desc, label


def test_an_endpoint_judge_is_scored_on_the_gold_pairs_it_was_sent(tmp_path):
    sample = sample_gold(load_gold_pairs(), 40)
    out = tmp_path / "v.csv"
    args = ("judge-check", "--base-url", "", "--model", "loopback-1", "--api-key-env", "T_KEY", "--judge-gold-pairs", "40",
            "--cache-dir", str(tmp_path / "c"), "--out", str(out))
    with LoopbackServer(LoopbackConfig(api_key=KEY)) as srv:
        a = list(args)
        a[2] = srv.base_url
        p = run_cli(*a, env={"T_KEY": KEY}, timeout=120)
        assert p.returncode == 0, p.stderr[-2000:]
        assert srv.stats.requests == 40 and srv.stats.auth_headers == {f"Bearer {KEY}"}
        received = sorted(_judged(b) for b in srv.stats.bodies)
        assert received == sorted(sample.select("description", "label").iter_rows())
        table = pl.read_csv(out)
        # the server's verdicts, recomputed here from what it answers, give the table's numbers
        truth = sample["fits"].to_numpy()
        said = np.array([reference_verdict(d, lab) for d, lab in sample.select("description", "label").iter_rows()])
        want = verdict_agreement(truth, said)
        r = table.row(0, named=True)
        assert r["judge"].startswith("loopback-1@127.0.0.1") and r["n"] == 40 and r["n_failed"] == 0
        assert abs(r["fnr"] - want["fnr"]) < 1e-9 and abs(r["fpr"] - want["fpr"]) < 1e-9
        assert "kappa" in p.stdout and "requests 40" in p.stdout and KEY not in p.stdout + p.stderr
        again = run_cli(*a, env={"T_KEY": KEY}, timeout=120)  # every answer cached: nothing is sent again
        assert again.returncode == 0, again.stderr[-2000:]
        assert srv.stats.requests == 40 and "requests 0" in again.stdout and "cache hits 40" in again.stdout


def test_the_offline_judge_is_checked_in_one_command_and_bad_input_is_one_line(tmp_path):
    out = tmp_path / "v.csv"
    p = run_cli("judge-check", "--backend", "offline", "--out", str(out), "--cache-dir", str(tmp_path / "c"), timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    r = pl.read_csv(out).row(0, named=True)
    assert r["judge"] == "offline:minilm" and r["n"] == 320 and r["kappa_lo"] <= r["kappa"] <= r["kappa_hi"]
    one_line_error(run_cli("judge-check", "--backend", "offline", "--judge-gold-pairs", "0"), "judge-gold-pairs")
