"""The stages of the full grid, each a function of its inputs and the spec; no scheduling in here.

Per model: ``spans`` (decompose + embed descriptions + TextSpan; with a ``toy:N`` probe set also the
``ground_truth`` table of :mod:`ccs_dist.toy.ground_truth`), ``score`` (LLM labels, verdicts, CCS),
``evaluate`` (soft-pruned tasks). ``ModelStages`` holds one loaded model, so a worker (in-process or a Ray
actor) loads it once and runs its stages; ``score_stage`` needs no model and runs wherever the LLM
client lives.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import polars as pl

from ccs_dist.jobs.spec import JobSpec, ModelEntry
from ccs_dist.store import atomic_write_json, read_json

log = logging.getLogger(__name__)

STAGES = ("spans", "score", "evaluate")
DOWNSTREAM = {"spans": ("spans", "score", "evaluate"), "score": ("score", "evaluate"), "evaluate": ("evaluate",)}
SCORE_TABLES = ("labels", "judgments", "ccs", "ccs_at_k")


def model_key_of(entry: ModelEntry) -> str:
    """The key ``load_model`` will give this entry (known without loading it)."""
    if entry.arch.startswith(("hf-hub:", "local-dir:")):
        return entry.arch
    if entry.pretrained is None:
        return f"{entry.arch}/random-init"
    if Path(entry.pretrained).suffix in (".pt", ".pth", ".bin", ".safetensors", ".ckpt") or "/" in entry.pretrained:
        return f"{entry.arch}/file:{Path(entry.pretrained).name}"
    return f"{entry.arch}/{entry.pretrained}"


def prepare_evaluation_data(spec: JobSpec) -> None:
    """With ``evaluation.synthetic``, write the synthetic datasets of the spec's tasks once."""
    ev = spec.evaluation
    if not ev.synthetic or not ev.tasks:
        return
    from ccs_dist.evaluate.synthetic import write_all

    root = spec.data_root
    marker = root / "synthetic.json"
    wanted = sorted({t.partition("@")[0] for t in ev.tasks})
    if marker.is_file() and read_json(marker).get("tasks") == wanted:
        return
    write_all(root, wanted)
    atomic_write_json(marker, {"tasks": wanted})


class ModelStages:
    """One model, loaded once; each public method is a stage returning tables and facts."""

    def __init__(self, spec: JobSpec, entry: ModelEntry, threads: int | None = None, progress: bool = True):
        import torch

        from ccs_dist.models.loading import load_model

        if threads:
            torch.set_num_threads(threads)
        self.spec, self.entry, self.progress = spec, entry, progress
        self.loaded = load_model(entry.arch, entry.pretrained, device=spec.resources.device, precision=spec.resources.precision)

    def spans(self) -> tuple[pl.DataFrame, dict[str, Any]]:
        from ccs_dist.decompose import DecomposeConfig
        from ccs_dist.runners import DecomposeRun, ModelSpec, TextSpanRun, run_textspan

        spec = self.spec
        layers = self.entry.layers if self.entry.layers is not None else spec.layers
        layers = layers if isinstance(layers, int) else tuple(layers)
        run = TextSpanRun(
            probe=DecomposeRun(
                model=ModelSpec(self.entry.arch, self.entry.pretrained, spec.resources.device, spec.resources.precision),
                images=spec.probe.images,
                cache_dir=spec.cache_dir,
                decompose=DecomposeConfig(layers=layers, batch_size=spec.probe.batch_size, num_workers=spec.probe.workers,
                                          on_bad_image=spec.probe.on_bad_image, progress=self.progress),
            ),
            pool=spec.pool,
            spans=spec.spans.config(rank=self.entry.rank),
            out=None,
        )
        result = run_textspan(run, loaded=self.loaded)
        tables = {"spans": result["table"]}
        if str(spec.probe.images).startswith("toy:"):  # probe factors are known: score every head against them
            tables["ground_truth"] = self._ground_truth(result["metadata"]["decomposition"])
        return tables, result["metadata"]

    def _ground_truth(self, decomposition: str) -> pl.DataFrame:
        from ccs_dist.decompose import DecompositionArtifact
        from ccs_dist.images import resolve_image_set
        from ccs_dist.store import read_json
        from ccs_dist.toy.ground_truth import ground_truth_from_decomposition

        path = Path(decomposition)
        artifact = DecompositionArtifact(path, read_json(path / "manifest.json"))
        probe = resolve_image_set(self.spec.probe.images, self.spec.cache_dir)
        return ground_truth_from_decomposition(self.loaded.key, artifact, probe.root)

    def evaluate(self, ccs: pl.DataFrame | None) -> tuple[pl.DataFrame, dict[str, Any]]:
        from ccs_dist.evaluate.run import EvalConfig, evaluate
        from ccs_dist.prune import HeadSetConfig, build_head_sets

        ev = self.spec.evaluation
        if not ev.tasks:
            return pl.DataFrame(schema={"model": pl.Utf8, "task": pl.Utf8, "condition": pl.Utf8, "seed": pl.Int64,
                                        "n_pruned": pl.Int64, "metric": pl.Utf8, "value": pl.Float64}), {}
        t0 = time.perf_counter()
        head_sets = build_head_sets(
            ccs, self.loaded.key, self.loaded.num_layers, self.loaded.num_heads,
            HeadSetConfig(conditions=tuple(ev.conditions), seeds=tuple(ev.seeds), concepts=ev.concepts,
                          explicit=tuple(ev.heads.items()), min_stability=ev.min_stability,
                          concept_heads=ev.concept_heads, random_layers=ev.random_layers),
        )
        config = EvalConfig(
            data_root=self.spec.data_root, batch_size=ev.batch_size, limit=ev.limit, download=ev.download,
            frames=ev.frames, k=ev.k, occupations=Path(ev.occupations) if ev.occupations else None,
            ablation=ev.ablation, templates_per_class=ev.templates_per_class, progress=self.progress, video_pooling=ev.video_pooling,
            class_names=ev.class_names, bias_templates=ev.bias_templates, bias_ranking=ev.bias_ranking,
        )
        table = evaluate(self.loaded, list(ev.tasks), head_sets, config)
        return table, {"head_sets": len(head_sets), "seconds": round(time.perf_counter() - t0, 3)}


def score_stage(spans: pl.DataFrame, spec: JobSpec, show_progress: bool = True) -> tuple[dict[str, pl.DataFrame], dict[str, Any]]:
    """LLM (or offline) labels and verdicts -> the four score tables and the client statistics."""
    from ccs_dist.llm import score_spans

    result = score_spans(spans, spec.score_config(show_progress=show_progress))
    return {name: getattr(result, name) for name in SCORE_TABLES}, dict(result.stats)
