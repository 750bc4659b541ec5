"""`ccs-dist score` and `ccs-dist agreement` end to end (subprocesses, loopback server, offline MiniLM)."""

from __future__ import annotations

import csv

import polars as pl
import pytest

from tests.support.cli import one_line_error, run_cli
from tests.support.llm_spans import KEY, make_spans
from tests.support.loopback import LoopbackConfig, LoopbackServer


@pytest.fixture(scope="module")
def spans_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("spans") / "spans.parquet"
    make_spans(12).write_parquet(p)
    return p


def test_score_and_agreement_against_loopback(spans_path, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    with LoopbackServer(LoopbackConfig(models=("m1", "m2"))) as srv:
        p = run_cli("score", "--spans", str(spans_path), "--out", str(out), "--base-url", srv.base_url, "--llm-model", "m1",
                "--judges", "m1,m2", "--cache-dir", str(cache), "--api-key-env", "T_KEY", "--progress=False",
                env={"T_KEY": KEY})
        assert p.returncode == 0, p.stderr[-2000:]
        assert "cache hits" in p.stdout and "estimated cost" in p.stdout
        for name in ("labels", "judgments", "ccs", "ccs_at_k"):
            assert pl.read_parquet(out / "tables" / f"{name}.parquet").height > 0
        assert pl.read_parquet(out / "tables" / "ccs_at_k.parquet")["fraction"].sum() == pytest.approx(1.0)
        sent = srv.stats.requests
        p2 = run_cli("score", "--spans", str(spans_path), "--out", str(out), "--base-url", srv.base_url, "--llm-model", "m1",
                 "--judges", "m1,m2", "--cache-dir", str(cache), "--api-key-env", "T_KEY", env={"T_KEY": KEY})
        assert p2.returncode == 0 and srv.stats.requests == sent and "requests 0" in p2.stdout
    assert KEY not in p.stderr + p.stdout + (out / "tables" / "score_meta.json").read_text()

    judges = sorted(pl.read_parquet(out / "tables" / "judgments.parquet")["judge"].unique())
    a = run_cli("agreement", "--judgments", str(out), "--judge-a", judges[0], "--judge-b", judges[1])
    assert a.returncode == 0 and "kappa=1.000" in a.stdout, a.stderr  # the loopback judges agree exactly

    sample = tmp_path / "sample.csv"
    e = run_cli("agreement", "--judgments", str(out / "tables" / "judgments.parquet"), "--export", str(sample), "--n", "20", "--seed", "1")
    assert e.returncode == 0, e.stderr
    rows = list(csv.DictReader(sample.open()))
    assert len(rows) == 20 and all(r["aligned"] == "" for r in rows)
    truth = pl.read_parquet(out / "tables" / "judgments.parquet").filter(pl.col("judge") == judges[0])
    lookup = {(r["layer"], r["head"], r["rank"]): r["aligned"] for r in truth.iter_rows(named=True)}
    for i, r in enumerate(rows):  # a "human" who flips the first 4 of 20 verdicts
        v = lookup[(int(r["layer"]), int(r["head"]), int(r["rank"]))]
        r["aligned"] = str(int(v if i >= 4 else not v))
    with sample.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    h = run_cli("agreement", "--judgments", str(out), "--human", str(sample), "--out", str(tmp_path / "agree.csv"))
    assert h.returncode == 0, h.stderr
    assert "n=20" in h.stdout and "raw=0.800" in h.stdout
    assert pl.read_csv(tmp_path / "agree.csv")["level"].to_list() == ["verdict", "ccs"]


def test_offline_backend_cli(spans_path, tmp_path):
    out = tmp_path / "out"
    p = run_cli("score", "--spans", str(spans_path), "--out", str(out), "--backend", "offline", "--threshold", "0.2424", "--progress=False")
    assert p.returncode == 0, p.stderr[-2000:]
    ccs = pl.read_parquet(out / "tables" / "ccs.parquet")
    labels = pl.read_parquet(out / "tables" / "labels.parquet")
    assert ccs.height == 12 and labels["label"].null_count() == 0 and set(labels["backend"]) == {"offline:minilm"}
    assert ccs["ccs"].mean() >= 2.0  # family-coherent heads: most descriptions judged aligned


def test_bad_inputs_give_one_line_errors(spans_path, tmp_path):
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"model": ["m"], "layer": [0], "text": ["x"]}).write_parquet(bad)
    one_line_error(run_cli("score", "--spans", str(bad), "--out", str(tmp_path / "o")), "lacks column(s) head, rank, variance")
    one_line_error(run_cli("score", "--spans", str(tmp_path / "none.parquet"), "--out", str(tmp_path / "o")), "does not exist")
    one_line_error(run_cli("score", "--spans", str(spans_path), "--out", str(tmp_path / "o")), "set the environment variable OPENAI_API_KEY")
    env = {"T_KEY": KEY}
    one_line_error(run_cli("score", "--spans", str(spans_path), "--out", str(tmp_path / "o"), "--api-key-env", "T_KEY",
                       "--judges", "m1,,m2", env=env), "invalid judge list")
    one_line_error(run_cli("score", "--spans", str(spans_path), "--out", str(tmp_path / "o"), "--api-key-env", "T_KEY",
                       "--base-url", "ftp://x", env=env), "not an http(s) URL")
    with LoopbackServer() as srv:
        one_line_error(run_cli("score", "--spans", str(spans_path), "--out", str(tmp_path / "o"), "--api-key-env", "T_KEY",
                           "--base-url", srv.base_url, "--llm-model", "nope", env=env), "model 'nope' is unknown")
    assert not (tmp_path / "o" / "tables" / "ccs.parquet").exists()  # nothing half-written
