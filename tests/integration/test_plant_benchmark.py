"""A small world-v3 job (plant:64 probes, 2 plant tasks, plant_s0 and its contrastive control): the benchmark runs on it."""

from __future__ import annotations

import polars as pl

from tests.support.jobs import job_env, run_full_grid

SPEC = """run: plantsmall
out: {out}
cache_dir: {cache}
models:
  - {{arch: ccs-plant, pretrained: plant_s0}}
  - {{arch: ccs-plant, pretrained: contrastive_s0}}
probe: {{images: "plant:64", batch_size: 64}}
layers: 4
pool: plant
spans: {{m: 3, rank: 8, method: exact}}
llm: {{backend: offline, offline_embedder: minilm}}
evaluation:
  synthetic: true
  tasks: [plant-colour, plant-bgtone]
  conditions: [original]
  seeds: [0]
  batch_size: 32
  templates_per_class: 1
resources: {{device: cpu, cpus_per_model: 1, gpus_per_model: 0}}
"""


def test_a_plant_job_writes_the_benchmark_with_the_control_checked_as_a_control(tmp_path):
    spec = tmp_path / "plantsmall.yaml"
    spec.write_text(SPEC.format(out=tmp_path / "reports", cache=tmp_path / "cache"), encoding="utf-8")
    proc = run_full_grid("--spec", str(spec), "--quiet", env=job_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    tables = tmp_path / "reports" / "plantsmall" / "tables"
    direct = pl.read_parquet(tables / "direct_ablation.parquet")
    assert set(direct["task"]) == {"plant-colour", "plant-bgtone"}
    heads = pl.read_parquet(tables / "benchmark_heads.parquet")
    assert heads.group_by("model").len().sort("model").rows() == [("ccs-plant/contrastive_s0", 20), ("ccs-plant/plant_s0", 20)]
    assert heads.filter(pl.col("model") == "ccs-plant/contrastive_s0")["kind"].to_list() == \
        heads.filter(pl.col("model") == "ccs-plant/plant_s0")["kind"].to_list()
    checks = pl.read_parquet(tables / "benchmark_checks.parquet")
    bgtone = checks.filter(pl.col("check") == "concept specificity: bgtone")  # hidden: no label names it, a miss
    assert sorted(bgtone["model"]) == ["ccs-plant/contrastive_s0", "ccs-plant/plant_s0", "seeds:ccs-plant/contrastive",
                                       "seeds:ccs-plant/plant"]
    assert not bgtone["passed"].any() and bgtone["p_value"].is_null().all()
    assert set(checks["model"]) >= {"ccs-plant/plant_s0", "ccs-plant/contrastive_s0"}
