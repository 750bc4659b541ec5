"""The full chain (spans -> score -> evaluate -> report) on each family of the model zoo at random init.

One local job over a small toy probe set: SigLIP's recipe (a timm trunk with attention pooling), EVA-02 (timm,
rotary), a Hugging Face ``CLIPModel`` folder, and open_clip's own ViT (``ccs-tiny``) as the family that worked
before. Every model gets every table and the report; the HF folder, which holds its own weights, is not flagged
random init while the three random-init builds are. Null: one model under four names would give the same spans.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.support.hf_folder import write_hf_clip
from tests.support.jobs import read_tables, run_full_grid

pytest.importorskip("transformers")
pytest.importorskip("timm")

SPEC = """
run: zoo
out: {out}
cache_dir: {cache}
models:
  - {{arch: ccs-tiny}}
  - {{arch: ccs-tiny-attnpool}}
  - {{arch: ccs-tiny-eva02}}
  - {{arch: "hf:{hf}"}}
probe: {{images: "toy:96", batch_size: 32}}
layers: 2
pool: toy
spans: {{m: 5, rank: 16, method: exact}}
llm: {{backend: offline, offline_embedder: minilm}}
evaluation:
  synthetic: true
  tasks: [toy-colour, toy-shape]
  conditions: [original, high, low, random]
  seeds: [0]
  batch_size: 32
  templates_per_class: 2
resources: {{device: cpu, cpus_per_model: 2}}
"""

MODELS = {"ccs-tiny/random-init", "ccs-tiny-attnpool/random-init", "ccs-tiny-eva02/random-init"}


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    hf = write_hf_clip(root / "hf-clip")
    spec = root / "zoo.yaml"
    spec.write_text(SPEC.format(out=root / "reports", cache=root / "cache", hf=hf), encoding="utf-8")
    proc = run_full_grid("--local", "--quiet", "--spec", str(spec), timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return root / "reports" / "zoo", proc, hf


def test_every_family_runs_the_whole_chain(zoo_run):
    run_dir, proc, hf = zoo_run
    tables = read_tables(run_dir)
    hf_model = next(m for m in tables["ccs"]["model"].unique() if m not in MODELS)
    assert hf_model.startswith("hf:") and hf_model.endswith(hf.name), hf_model
    models = MODELS | {hf_model}
    for name in ("spans", "labels", "judgments", "ccs", "evaluation"):
        assert set(tables[name]["model"]) == models, name
    ccs = tables["ccs"]
    trunk = ccs.filter(pl.col("unit") == "head")
    assert all(trunk.filter(pl.col("model") == m).height == 2 * 4 for m in models)  # last 2 layers x 4 heads
    pool = ccs.filter(pl.col("unit") != "head")  # SigLIP's pooling heads and MLP, scored as units, at layer 3
    assert pool.select("model", "layer", "head", "unit").rows() == (
        [("ccs-tiny-attnpool/random-init", 3, u, "pool_head") for u in range(4)] + [("ccs-tiny-attnpool/random-init", 3, 4, "pool_mlp")])
    assert tables["ccs_at_k"].filter(pl.col("model") == "ccs-tiny-attnpool/random-init")["n_heads"].max() <= 8  # heads only
    assert ccs["ccs"].is_between(0, 5).all()
    assert (tables["spans"].group_by("model", "layer", "head").len()["len"] == 5).all()
    ev = tables["evaluation"]
    for m in models:
        rows = ev.filter(pl.col("model") == m)
        assert {"toy-colour", "toy-shape"} <= set(rows["task"])
        assert {"original", "high", "low", "random"} <= set(rows["condition"])
        assert rows["value"].is_finite().all()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert [m["random_init"] for m in manifest["models"]] == [True, True, True, False]  # a folder's weights are its own
    assert {(s["model"], s["stage"]) for s in manifest["stages"]} >= {(m, s) for m in models for s in ("spans", "score", "evaluate")}
    flagged = next(line for line in proc.stdout.splitlines() if "RANDOM INIT" in line)
    assert all(m in flagged for m in MODELS) and hf_model not in flagged
    html = (run_dir / "index.html").read_text(encoding="utf-8")
    assert all(m in html for m in ("ccs-tiny-attnpool", "ccs-tiny-eva02")) and "pooling MLP" in html


def test_the_families_are_told_apart(zoo_run):
    """Null: were the towers one model under four names, their spans would be the same texts."""
    run_dir, _, _ = zoo_run
    spans = read_tables(run_dir)["spans"]
    by_model = {m: tuple(g.sort("layer", "head", "rank")["text"]) for (m,), g in spans.group_by("model")}
    assert len(set(by_model.values())) == len(by_model)
