"""``ccs-dist annotate``: a stratified sample of a run's judgments out as CSV and a static page, the filled CSV back in
as per-judge agreement with intervals; an annotator answering at random must give a kappa interval covering 0."""

from __future__ import annotations

import numpy as np
import polars as pl

from ccs_dist.artifacts.schemas import JUDGMENTS_SCHEMA, csv_unescape
from tests.support.cli import one_line_error, run_cli

KEY = ["model", "layer", "head", "rank", "text", "label"]


def _run(tmp_path, n_heads: int = 60, with_probability: bool = False):
    """A run directory whose tables/judgments.parquet holds two judges' verdicts (B agrees with A on 80 %)."""
    rng = np.random.default_rng(0)
    rows = []
    for h in range(n_heads):
        for r in range(5):
            a = bool(rng.random() < 0.4)
            b = a if rng.random() < 0.8 else not a
            base = dict(model="m/x", layer=h // 12, head=h % 12, rank=r, text=f"=line {h}, {r} \"q\"", label=f"label {h}", error=None)
            rows.append({**base, "aligned": a, "judge": "offline:minilm"})
            rows.append({**base, "aligned": b, "judge": "m2@127.0.0.1:9"})
    df = pl.DataFrame(rows, schema=JUDGMENTS_SCHEMA)
    if with_probability:  # judge B says how sure it is: 0.9 when it says yes, 0.1 when no
        df = df.with_columns(probability=pl.when(pl.col("judge") == "m2@127.0.0.1:9")
                             .then(pl.when(pl.col("aligned")).then(0.9).otherwise(0.1)).otherwise(None))
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    df.write_parquet(run / "tables" / "judgments.parquet")
    return run, df


def _fill(csv, out, answer) -> pl.DataFrame:
    """The exported CSV with its aligned column filled by ``answer(row)`` (rows as read back: text unescaped)."""
    d = csv_unescape(pl.read_csv(csv, infer_schema_length=0))
    d.with_columns(aligned=pl.Series([answer(r) for r in d.iter_rows(named=True)])).write_csv(out)
    return d


def test_export_fill_import_round_trip_and_a_random_annotator_null(tmp_path):
    run, df = _run(tmp_path)
    exp = tmp_path / "a" / "sample.csv"
    p = run_cli("annotate", "--judgments", str(run), "--export", str(exp), "--n", "150")
    assert p.returncode == 0, p.stderr[-2000:]
    sample = pl.read_csv(exp, infer_schema_length=0)
    assert sample.height == 150 and sample["aligned"].null_count() == 150 and "judge" not in sample.columns
    page = exp.with_suffix(".html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page and "<script src" not in page and "download" in page
    # stratified by the judges' majority verdict (a tie of the two judges counts as no): both classes well represented
    a = df.filter(pl.col("judge") == "offline:minilm")
    maj = df.group_by(KEY).agg(pl.col("aligned").sum()).with_columns(pl.col("aligned") == 2)
    s = csv_unescape(sample.drop("aligned")).with_columns(pl.col("layer", "head", "rank").cast(pl.Int64)).join(maj, on=KEY)
    assert s.height == 150 and 60 <= int(s["aligned"].sum()) <= 90
    # the annotator agrees with judge A: A's kappa is 1, B's is what B's 80 % agreement gives
    truth = {tuple(r[:6]): r[6] for r in a.select(KEY + ["aligned"]).iter_rows()}
    filled = tmp_path / "filled.csv"
    _fill(exp, filled, lambda r: "1" if truth[(r["model"], int(r["layer"]), int(r["head"]), int(r["rank"]), r["text"], r["label"])] else "0")
    out = tmp_path / "agreement.csv"
    p = run_cli("annotate", "--judgments", str(run), "--import", str(filled), "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    t = {r["judge"]: r for r in pl.read_csv(out).iter_rows(named=True)}
    assert t["offline:minilm"]["kappa"] == 1.0 and t["offline:minilm"]["fpr"] == 0.0 and t["offline:minilm"]["n"] == 150
    assert 0.3 < t["m2@127.0.0.1:9"]["kappa"] < 0.9 and t["m2@127.0.0.1:9"]["kappa_lo"] > 0
    assert "judges (majority)" in t and "no calibration curve" in p.stdout
    # the null: an annotator answering at random
    rng = np.random.default_rng(7)
    _fill(exp, filled, lambda r: str(int(rng.random() < 0.5)))
    p = run_cli("annotate", "--judgments", str(run), "--import", str(filled), "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    for r in pl.read_csv(out).iter_rows(named=True):
        assert r["kappa_lo"] < 0 < r["kappa_hi"], r


def test_a_judge_with_probabilities_gets_a_calibration_curve_and_bad_input_is_one_line(tmp_path):
    run, df = _run(tmp_path, n_heads=24, with_probability=True)
    exp = tmp_path / "s.csv"
    assert run_cli("annotate", "--judgments", str(run), "--export", str(exp), "--n", "100").returncode == 0
    b = {tuple(r[:6]): r[6] for r in df.filter(pl.col("judge") == "m2@127.0.0.1:9").select(KEY + ["aligned"]).iter_rows()}
    filled = tmp_path / "f.csv"
    _fill(exp, filled, lambda r: "1" if b[(r["model"], int(r["layer"]), int(r["head"]), int(r["rank"]), r["text"], r["label"])] else "0")
    out = tmp_path / "ag.csv"
    p = run_cli("annotate", "--judgments", str(run), "--import", str(filled), "--out", str(out))
    assert p.returncode == 0, p.stderr[-2000:]
    curve = pl.read_csv(tmp_path / "ag_calibration.csv")
    assert set(curve["judge"]) == {"m2@127.0.0.1:9"} and abs(curve["ece"][0] - 0.1) < 1e-9  # always right, says 0.9
    assert "ECE 0.100" in p.stdout
    one_line_error(run_cli("annotate", "--judgments", str(run)), "exactly one of --export")
    one_line_error(run_cli("annotate", "--judgments", str(run), "--export", str(exp), "--n", "0"), "--n must be a positive")


def test_the_page_fills_in_offline_and_its_csv_imports(browser, tmp_path):
    run, _ = _run(tmp_path, n_heads=6)
    exp = tmp_path / "s.csv"
    assert run_cli("annotate", "--judgments", str(run), "--export", str(exp), "--n", "12").returncode == 0
    browser.open(exp.with_suffix(".html"), offline=True)
    assert browser.eval("document.querySelectorAll('#pairs tr').length") == 12
    browser.click('input[name="p0"][value="1"]')  # real mouse clicks on the radio buttons
    browser.click('input[name="p1"][value="0"]')
    browser.click("#download")
    assert "2 of 12" in browser.eval("document.getElementById('status').textContent")
    filled = tmp_path / "from_page.csv"
    filled.write_text(browser.eval("filledCsv()"), encoding="utf-8")
    assert not browser.problems() and not [u for u in browser.requests() if not u.startswith(("file:", "data:"))]
    back = pl.read_csv(filled, infer_schema_length=0)
    assert back.columns == pl.read_csv(exp, infer_schema_length=0).columns and back["aligned"].to_list()[:2] == ["1", "0"]
    # the page writes the texts as they read (the exported CSV guards formula-like cells with a quote; import takes both)
    assert back["aligned"].null_count() == 10
    assert back["text"].to_list() == csv_unescape(pl.read_csv(exp, infer_schema_length=0))["text"].to_list()
    p = run_cli("annotate", "--judgments", str(run), "--import", str(filled))
    assert p.returncode == 0 and "n 2," in p.stdout, p.stderr[-2000:]
