"""The full grid's driver: plan which stages each model needs, run them (in-process or on Ray), gather.

Execution backends share this module's plan and bookkeeping; they differ only in where the stage
functions of :mod:`ccs_dist.jobs.stages` run. Local mode never imports ray.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ccs_dist.errors import UserError
from ccs_dist.jobs.resume import StageStore, frame_hash
from ccs_dist.jobs.spec import JobSpec, ModelEntry
from ccs_dist.jobs.stages import DOWNSTREAM, STAGES, model_key_of, prepare_evaluation_data
from ccs_dist.store import atomic_write_json, content_key
from ccs_dist.tables import write_table

log = logging.getLogger(__name__)
STAGE_VERSION = 1


@dataclass
class ModelPlan:
    """One model's stage graph: what is already on disk and what must run."""

    entry: ModelEntry
    key: str
    done: dict[str, tuple[dict[str, pl.DataFrame], dict[str, Any]]] = field(default_factory=dict)

    def needs(self, stage: str) -> bool:
        return stage not in self.done

    @property
    def needs_model(self) -> bool:
        return self.needs("spans") or self.needs("evaluate")


class JobState:
    """Stage keys, the stage store and the timing/LLM bookkeeping of one run."""

    def __init__(self, spec: JobSpec, force: tuple[str, ...] = ()):
        self.spec = spec
        self.store = StageStore(spec.run_dir)
        self.force = set()
        for stage in force:
            if stage not in STAGES:
                raise UserError(f"--force {stage}: unknown stage; stages are {', '.join(STAGES)}")
            self.force.update(DOWNSTREAM[stage])
        self.timings: list[dict[str, Any]] = []
        self.llm_stats: list[dict[str, Any]] = []

    # Keys: what produced a stage's output. Changing any of it recomputes the stage and what follows.
    def spans_key(self, entry: ModelEntry) -> str:
        s = self.spec
        return content_key({"v": STAGE_VERSION, "model": entry.model_dump(), "probe": s.probe.model_dump(),
                            "layers": s.layers, "pool": _pool_hash(s.pool, s.cache_dir), "spans": s.spans.model_dump(),
                            "precision": s.resources.precision})

    def score_key(self, spans: pl.DataFrame) -> str:
        return content_key({"v": STAGE_VERSION, "spans": frame_hash(spans), "llm": self.spec.llm.model_dump(mode="json")})

    def evaluate_key(self, entry: ModelEntry, ccs: pl.DataFrame) -> str:
        return content_key({"v": STAGE_VERSION, "model": entry.model_dump(), "ccs": frame_hash(ccs),
                            "evaluation": self.spec.evaluation.model_dump(mode="json")})

    def lookup(self, plan: ModelPlan, stage: str, key: str) -> bool:
        if stage in self.force:
            return False
        found = self.store.load(plan.key, stage, key)
        if found is None:
            return False
        plan.done[stage] = found
        self.timings.append({"model": plan.key, "stage": stage, "seconds": 0.0, "reused": True})
        if stage == "score":
            self.llm_stats.append({**found[1].get("llm", {}), "reused_stage": True})
        log.info("%s: stage %s reused from %s", plan.key, stage, self.store.root)
        return True

    def finish(self, plan: ModelPlan, stage: str, key: str, tables: dict[str, pl.DataFrame], facts: dict[str, Any], seconds: float):
        manifest = self.store.save(plan.key, stage, key, tables, {**facts, "seconds": round(seconds, 3), "versions": versions()})
        plan.done[stage] = (tables, manifest)
        self.timings.append({"model": plan.key, "stage": stage, "seconds": round(seconds, 3), "reused": False})
        if stage == "score":
            self.llm_stats.append(facts.get("llm", {}))
        log.info("%s: stage %s done in %.1f s", plan.key, stage, seconds)


def _pool_hash(pool: str, cache_dir: str) -> str:
    from ccs_dist.text.pool import resolve_pool

    return resolve_pool(pool, cache_dir).content_hash


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("ccs_dist", "torch", "open_clip_torch", "polars", "ray"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def plan_models(state: JobState) -> list[ModelPlan]:
    """Reuse what is on disk, as far down each model's graph as it stays valid."""
    plans = []
    for entry in state.spec.models:
        plan = ModelPlan(entry, model_key_of(entry))
        if state.lookup(plan, "spans", state.spans_key(entry)):
            spans = plan.done["spans"][0]["spans"]
            if state.lookup(plan, "score", state.score_key(spans)):
                state.lookup(plan, "evaluate", state.evaluate_key(entry, plan.done["score"][0]["ccs"]))
        plans.append(plan)
    return plans


# --------------------------------------------------------------------------------------------------------
# Local mode: every stage in this process, one model at a time.


def run_local(state: JobState, plans: list[ModelPlan], show_progress: bool = True) -> None:
    import gc

    from ccs_dist.jobs.stages import ModelStages, score_stage

    threads = max(1, int(state.spec.resources.cpus_per_model)) if state.spec.resources.device == "cpu" else None
    for plan in plans:
        stages = ModelStages(state.spec, plan.entry, threads=threads, progress=show_progress) if plan.needs_model else None
        if plan.needs("spans"):
            t0 = time.perf_counter()
            tables, meta = stages.spans()
            state.finish(plan, "spans", state.spans_key(plan.entry), tables, {"metadata": meta}, time.perf_counter() - t0)
        spans = plan.done["spans"][0]["spans"]
        if plan.needs("score"):
            t0 = time.perf_counter()
            tables, stats = score_stage(spans, state.spec, show_progress)
            state.finish(plan, "score", state.score_key(spans), tables, {"llm": stats}, time.perf_counter() - t0)
        ccs = plan.done["score"][0]["ccs"]
        if plan.needs("evaluate"):
            t0 = time.perf_counter()
            table, facts = stages.evaluate(ccs)
            state.finish(plan, "evaluate", state.evaluate_key(plan.entry, ccs), {"evaluation": table}, facts, time.perf_counter() - t0)
        del stages
        gc.collect()


# --------------------------------------------------------------------------------------------------------
# Gathering


@dataclass
class JobOutcome:
    run_dir: Path
    tables: dict[str, Path]
    report: Path | None
    summary: str
    wall_s: float


def _llm_totals(stats: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("requests", "hits", "misses", "tokens_in", "tokens_out", "cost_usd", "cost_avoided_usd")
    total = {k: 0 for k in keys}
    for s in stats:
        if s.get("reused_stage"):
            continue  # nothing was asked this run
        for k in keys:
            total[k] += s.get(k, 0) or 0
    total["stages_reused"] = sum(1 for s in stats if s.get("reused_stage"))
    return {"requests": total["requests"], "cache_hits": total["hits"], "cache_misses": total["misses"],
            "tokens_in": total["tokens_in"], "tokens_out": total["tokens_out"], "cost_usd": round(total["cost_usd"], 6),
            "cost_avoided_usd": round(total["cost_avoided_usd"], 6), "score_stages_reused": total["stages_reused"]}


def gather(state: JobState, plans: list[ModelPlan], wall_s: float, mode: str) -> JobOutcome:
    spec = state.spec
    run_dir = spec.run_dir
    tables: dict[str, list[pl.DataFrame]] = {}
    for plan in plans:
        for stage in STAGES:
            for name, df in plan.done[stage][0].items():
                tables.setdefault(name, []).append(df)
    precision = {plan.key: _stage_precision(plan) for plan in plans}
    merged = {name: pl.concat(frames, how="vertical_relaxed") for name, frames in tables.items()}
    if "ground_truth" in merged:  # a toy probe set: compare the method with the known factors
        from ccs_dist.toy.outcomes import toy_tables

        merged.update(toy_tables(merged))
    paths = {}
    for name, df in merged.items():
        paths[name] = write_table(df, run_dir / "tables" / f"{name}.parquet",
                                  {"run": spec.run, "spec_hash": spec.spec_hash(), "stage_precision": precision})
    models = []
    for plan in plans:
        meta = plan.done["spans"][1].get("metadata", {})
        models.append({"model": plan.key, "arch": plan.entry.arch, "pretrained": plan.entry.pretrained,
                       "random_init": plan.entry.pretrained is None, **{k: meta.get(k) for k in ("num_layers", "num_heads", "embed_dim")},
                       "stage_precision": precision[plan.key]})
    skipped = []
    for plan in plans:
        meta = plan.done["spans"][1].get("metadata", {})
        if meta.get("skipped_images"):
            skipped.append({"model": plan.key, "skipped_images": meta["skipped_images"]})
    ccs = pl.concat([p.done["score"][0]["ccs"] for p in plans], how="vertical_relaxed")
    failed = int(ccs["n_failed"].sum()) if "n_failed" in ccs.columns else 0
    flagged = _flagged(tables)
    manifest = {
        "run": spec.run,
        "mode": mode,
        "spec": _redacted_spec(spec),
        "spec_hash": spec.spec_hash(),
        "versions": versions(),
        "models": models,
        "stages": state.timings,
        "llm": _llm_totals(state.llm_stats),
        "failures": {"failed_verdicts": failed, "skipped_files": skipped, "flagged_heads": flagged},
        "tables": {name: str(p.relative_to(run_dir)) for name, p in paths.items()},
        "wall_s": round(wall_s, 3),
        "run_dir": str(run_dir),
    }
    atomic_write_json(run_dir / "manifest.json", manifest)
    report = _write_report(run_dir)
    return JobOutcome(run_dir, paths, report, summarize(manifest, report), wall_s)


def _flagged(tables: dict[str, list[pl.DataFrame]]) -> list[dict[str, str]]:
    """Heads without a label or with a failed verdict (left out of every head set), with the first reason."""
    from ccs_dist.llm.score import flagged_heads

    if "labels" not in tables or "judgments" not in tables:
        return []
    return flagged_heads(pl.concat(tables["labels"], how="vertical_relaxed"), pl.concat(tables["judgments"], how="vertical_relaxed"))


def _redacted_spec(spec: JobSpec) -> dict[str, Any]:
    """The spec as the manifest shows it: endpoint URLs without credentials or query values."""
    from ccs_dist.llm.urls import redact_url

    data = spec.model_dump(mode="json")
    for ep in (data["llm"]["labeler"], *data["llm"]["judges"]):
        ep["base_url"] = redact_url(ep["base_url"])
    return data


def _stage_precision(plan: ModelPlan) -> dict[str, str]:
    """What each stage of a model computed in (the spans stage records it; older stages fall back to the model's)."""
    meta = plan.done["spans"][1].get("metadata", {})
    return meta.get("stage_precision") or {"decompose": meta.get("precision"), "evaluate": meta.get("precision")}


def _write_report(run_dir: Path) -> Path | None:
    try:
        from ccs_dist.report import write_report
    except ImportError:
        log.info("no report module installed; tables are in %s", run_dir / "tables")
        return None
    return write_report(run_dir)


def summarize(manifest: dict[str, Any], report: Path | None) -> str:
    lines = [f"run {manifest['run']} ({manifest['mode']} mode) finished in {manifest['wall_s']:.1f} s"]
    for t in manifest["stages"]:
        status = "reused" if t["reused"] else f"{t['seconds']:.1f} s"
        lines.append(f"  {t['model']:<34} {t['stage']:<9} {status}")
    llm = manifest["llm"]
    lines.append(
        f"  LLM: {llm['requests']} requests, {llm['cache_hits']} cache hits, {llm['cache_misses']} misses, "
        f"tokens {llm['tokens_in']}/{llm['tokens_out']}, cost ${llm['cost_usd']:.4f}, "
        f"avoided by the cache ${llm['cost_avoided_usd']:.4f}, score stages reused {llm['score_stages_reused']}"
    )
    flagged = manifest["failures"].get("flagged_heads") or []
    if flagged:
        names = ", ".join(f["head"] for f in flagged[:6]) + (f", and {len(flagged) - 6} more" if len(flagged) > 6 else "")
        lines.append(f"  FLAGGED: {len(flagged)} head(s) with failed verdicts, left out of every head set and of CCS@K: {names} "
                     "(reasons in manifest.json and the report)")
    for m in manifest["models"]:
        p = m.get("stage_precision") or {}
        if p:
            lines.append(f"  precision {m['model']}: " + ", ".join(f"{k} {v}" for k, v in p.items()))
    if any(m["random_init"] for m in manifest["models"]):
        lines.append("  RANDOM INIT: " + ", ".join(m["model"] for m in manifest["models"] if m["random_init"]) + " had no pretrained weights")
    lines.append(f"  tables: {', '.join(sorted(manifest['tables']))} in {manifest['run_dir']}/tables")
    lines.append(f"report: {report}" if report is not None else f"tables written (no report module): {manifest['run_dir']}/tables")
    return "\n".join(lines)


def check_inputs(spec: JobSpec) -> None:
    """Input files the driver can check before any stage runs (the pool is read when planning)."""
    ev = spec.evaluation
    if ev.occupations and any(t.partition("@")[0] in ("fairface", "socialcounterfactuals") for t in ev.tasks):
        from ccs_dist.evaluate.bias import read_occupations

        read_occupations(ev.occupations)


def run_job(spec: JobSpec, mode: str = "local", force: tuple[str, ...] = (), show_progress: bool = True, address: str | None = None) -> JobOutcome:
    from ccs_dist.errors import check_dir_arg

    check_dir_arg("out (--out)", spec.run_dir)  # up front: not after the spans stage ran
    check_dir_arg("cache_dir (--cache-dir)", spec.cache_dir)
    t0 = time.perf_counter()
    state = JobState(spec, force)
    check_inputs(spec)
    prepare_evaluation_data(spec)
    plans = plan_models(state)
    todo = sum(plan.needs(s) for plan in plans for s in STAGES)
    log.info("run %s: %d models, %d stages to run, %d reused", spec.run, len(plans), todo, len(plans) * len(STAGES) - todo)
    if todo:
        if mode == "local":
            run_local(state, plans, show_progress)
        else:
            from ccs_dist.distributed.executor import run_ray

            run_ray(state, plans, address=address, show_progress=show_progress)
    return gather(state, plans, time.perf_counter() - t0, mode)
