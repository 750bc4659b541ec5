"""The decompose / textspan commands as a user runs them: real files, real exit codes, one-line errors."""

from __future__ import annotations

import polars as pl
import pytest
from PIL import Image

from ccs_dist.artifacts.schemas import read_metadata
from tests.support.cli import run_cli


def _error_line(proc):
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def test_textspan_end_to_end_on_the_tiny_model(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = ["textspan", "--model", "ccs-tiny", "--pretrained", "none", "--images", "synthetic:24", "--layers", "2",
            "--rank", "16", "--cache-dir", str(cache), "--out", str(out), "--workers", "0"]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "spans of 8 heads written to" in proc.stdout
    spans = pl.read_parquet(out / "tables" / "spans.parquet")
    assert spans.columns == ["model", "layer", "head", "rank", "text", "variance",
                             "requested_rank", "effective_rank", "stability", "span1_stability", "unit"]
    assert set(spans["unit"]) == {"head"}  # a class-token tower: trunk heads only
    assert (spans["requested_rank"] == 16).all() and spans["effective_rank"].is_between(1, 16).all()
    assert spans["stability"].is_between(0, 1).all() and spans["span1_stability"].is_between(0, 1).all()
    assert spans.height == 8 * 5 and set(spans["layer"]) == {1, 2} and set(spans["rank"]) == set(range(5))
    assert spans.group_by("layer", "head").agg(pl.col("text").n_unique())["text"].min() == 5
    assert (spans["variance"] > 0).all() and (spans["variance"] <= 1).all()
    meta = read_metadata(out / "tables" / "spans.parquet")
    assert meta["random_init"] is True and meta["model"] == "ccs-tiny/random-init" and meta["n_images"] == 24
    assert meta["stage_precision"]["decompose"] == "fp32" and meta["spans"]["rank_policy"] == "numerical"
    assert "RANDOM INIT" in proc.stderr
    # A second run reuses the decomposition and the text embeddings.
    again = run_cli(*args)
    assert again.returncode == 0 and "reused" in again.stderr
    assert pl.read_parquet(out / "tables" / "spans.parquet").equals(spans)


def test_decompose_command_and_help(tmp_path):
    proc = run_cli("decompose", "--model", "ccs-tiny", "--images", "synthetic:8", "--layers", "[1,2]",
                   "--cache-dir", str(tmp_path), "--workers", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "decomposed 8 images (0 skipped)" in proc.stdout and "layers [1, 2]" in proc.stdout
    helptext = run_cli("textspan", "--help")
    for flag in ("--model", "--pretrained", "--images", "--layers", "--pool", "--rank", "--method", "--on-bad-image"):
        assert flag.replace("_", "-") in (helptext.stdout + helptext.stderr).replace("_", "-"), flag


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--model", "ViT-B-33"], "unknown architecture 'ViT-B-33': did you mean ViT-B-32"),
        (["--model", "ViT-B-32", "--pretrained", "laion_bogus"], "unknown pretrained tag 'laion_bogus' for ViT-B-32: valid tags are openai"),
        (["--model", "ViT-B-32", "--pretrained", "/nope/model.pt"], "checkpoint file /nope/model.pt not found"),
        (["--layers", "9"], "layers=9 is out of range: this model has 3 layers"),
        (["--rank", "33"], "rank=33 exceeds the embedding size E=32"),
        (["--m", "5000"], "pool of 1438 descriptions"),
        (["--device", "cuda"], "no CUDA GPU is visible"),
        (["--images", "nosuchset:/x"], "unknown image set"),
        (["--method", "magic"], "unknown method 'magic'"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(tmp_path, extra, fragment):
    layers = ([] if "--layers" in extra else ["--layers", "2"]) + ([] if "--rank" in extra else ["--rank", "16"])
    args = ["textspan", "--model", "ccs-tiny", "--images", "synthetic:4", "--cache-dir", str(tmp_path / "c"),
            "--out", str(tmp_path / "o"), "--workers", "0", *layers, *extra]
    proc = run_cli(*args)
    assert fragment in _error_line(proc)
    assert not (tmp_path / "o" / "tables" / "spans.parquet").exists()
    assert not list((tmp_path / "c").glob("decompose/*/manifest.json"))


def test_bad_files(tmp_path):
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    base = ["textspan", "--model", "ccs-tiny", "--layers", "2", "--rank", "8", "--cache-dir", str(tmp_path / "c"), "--out", str(tmp_path / "o"), "--workers", "0"]
    assert "holds no image files" in _error_line(run_cli(*base, "--images", str(empty_dir)))
    (tmp_path / "blank.txt").write_text("\n\n", encoding="utf-8")
    assert "has no non-blank lines" in _error_line(run_cli(*base, "--images", "synthetic:4", "--pool", str(tmp_path / "blank.txt")))
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (70 * i, 20, 0)).save(bad / f"a{i}.png")
    (bad / "b.png").write_bytes(b"\x89PNG broken")
    line = _error_line(run_cli(*base, "--images", str(bad), "--on-bad-image", "error"))
    assert "unreadable image b.png" in line and "--on-bad-image skip" in line
    ok = run_cli(*base, "--images", str(bad), "--pool", str(_small_pool(tmp_path)))
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert read_metadata(tmp_path / "o" / "tables" / "spans.parquet")["skipped_images"] == 1


def _small_pool(tmp_path):
    p = tmp_path / "pool.txt"
    p.write_text("\n".join(f"description number {i}" for i in range(20)) + "\n", encoding="utf-8")
    return p


def test_textspan_faiss_method_writes_spans_and_persists_its_index(tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    proc = run_cli("textspan", "--model", "ccs-tiny", "--images", "synthetic:16", "--layers", "1", "--rank", "16",
                   "--method", "faiss", "--cache-dir", str(cache), "--out", str(out), "--workers", "0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    spans = pl.read_parquet(out / "tables" / "spans.parquet")
    assert spans.height == 4 * 5 and spans.group_by("head").agg(pl.col("text").n_unique())["text"].min() == 5
    assert read_metadata(out / "tables" / "spans.parquet")["spans"]["method"] == "faiss"
    assert len(list((cache / "faiss").glob("*.index"))) == 1
