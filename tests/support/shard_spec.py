"""The sharded job spec of the multi-node Ray tests: one model, the toy probe set and evaluation split into
shards (the local run, the two-node run and the two-nodes-through-S3 run all use it)."""

from __future__ import annotations

SHARDS = 8
TASKS = ["toy-colour", "toy-shape", "toy-size", "toy-position"]  # one evaluation shard each
SPEC = f"""
run: shards
models:
  - {{arch: ccs-toy, pretrained: planted_v2}}
probe: {{images: "toy:256", batch_size: 16, shards: {SHARDS}}}
layers: 4
pool: toy
spans: {{m: 3, rank: 32, method: exact}}
llm: {{backend: offline, offline_embedder: minilm}}
evaluation:
  synthetic: true
  tasks: [{", ".join(TASKS)}]
  shards: {len(TASKS)}
  conditions: [original, high, random]
  seeds: [0]
  batch_size: 32
  templates_per_class: 2
resources: {{device: cpu, cpus_per_model: 1, gpus_per_model: 1, shard_workers: 2}}
"""
