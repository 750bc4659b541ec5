"""The full grid's driver: plan which stages each model needs, run them (in-process or on Ray), gather.

The chain itself (order, inputs, keys, what a stage does) is :mod:`ccs_dist.stages.chain`; this module
keeps the plan and the books, and hands the stages to an executor: :func:`run_local` here, or
:func:`ccs_dist.distributed.executor.run_ray`. Local mode never imports ray.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from ccs_dist.benchmark.plans import run_plan
from ccs_dist.benchmark.tables import benchmark_tables
from ccs_dist.benchmark.worlds import world_of_probe
from ccs_dist.core.errors import UserError
from ccs_dist.core.weights import is_random_init_model
from ccs_dist.jobs.resume import StageStore
from ccs_dist.jobs.spec import JobSpec, ModelEntry
from ccs_dist.stages.chain import STAGES, ChainConfig, ModelRunner, Stage, StageContext, StageOutput, downstream, enabled_stages, \
    inputs_of, next_stage, run_stage
from ccs_dist.stages.evaluate import prepare_synthetic_data
from ccs_dist.artifacts.run_dir import STAGES as STAGES_FOLDER, RunDir
from ccs_dist.artifacts.storage import check_root, display, join, remote_root
from ccs_dist.artifacts.store import atomic_write_json
from ccs_dist.artifacts.schemas import write_table
from ccs_dist.llm.score import flagged_heads
from ccs_dist.llm.urls import redact_url
from ccs_dist.toy.outcomes import toy_tables
from ccs_dist.evaluate.bias import read_occupations

log = logging.getLogger(__name__)


@dataclass
class ModelPlan:
    """One model's chain: its stage configs, what is already finished (loaded or run) and what is left."""

    entry: ModelEntry
    config: ChainConfig
    done: dict[str, StageOutput] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.config.key

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(s.name for s in enabled_stages(self.config))

    def needs(self, stage: str) -> bool:
        return stage in self.stages and stage not in self.done

    @property
    def needs_model(self) -> bool:
        return any(s.uses_model and self.needs(s.name) for s in enabled_stages(self.config))

    def next_stage(self) -> Stage | None:
        return next_stage(self.config, self.done)

    def inputs(self, stage: Stage):
        return inputs_of(stage, self.done)

    def table(self, stage: str, name: str) -> pl.DataFrame:
        return self.done[stage].tables[name]

    @property
    def facts(self) -> dict[str, dict[str, Any]]:
        return {name: out.facts for name, out in self.done.items()}


class JobState:
    """The stage store and the timing/LLM bookkeeping of one run."""

    def __init__(self, spec: JobSpec, force: tuple[str, ...] = ()):
        self.spec = spec
        self.store = StageStore(spec.run_root)
        self.force = set()
        for stage in force:
            if stage not in STAGES:
                raise UserError(f"--force {stage}: unknown stage; stages are {', '.join(STAGES)}")
            self.force.update(downstream(stage))
        self.timings: list[dict[str, Any]] = []
        self.llm_stats: list[dict[str, Any]] = []
        self.shard_runs: list[dict[str, Any]] = []  # shards of sharded stages done by Ray workers

    def lookup(self, plan: ModelPlan, stage: Stage) -> bool:
        """Reuse the stage from the store when it finished under the key of its current inputs."""
        inputs = plan.inputs(stage)
        if stage.name in self.force or inputs is None:
            return False
        found = self.store.load(plan.key, stage.name, stage.key(plan.config, inputs))
        if found is None:
            return False
        plan.done[stage.name] = found
        self.timings.append({"model": plan.key, "stage": stage.name, "seconds": 0.0, "reused": True})
        if "llm" in found.facts:
            self.llm_stats.append({**found.facts["llm"], "reused_stage": True})
        log.info("%s: stage %s reused from %s", plan.key, stage.name, display(join(self.spec.run_root, STAGES_FOLDER)))
        return True

    def finish(self, plan: ModelPlan, stage: Stage, inputs, output: StageOutput, seconds: float) -> None:
        """Record a stage that just ran: its tables and manifest in the store (resume), its time and LLM use."""
        facts = {**output.facts, "seconds": round(seconds, 3), "versions": versions()}
        manifest = self.store.save(plan.key, stage.name, stage.key(plan.config, inputs), output.tables, facts)
        plan.done[stage.name] = StageOutput(output.tables, manifest)
        self.timings.append({"model": plan.key, "stage": stage.name, "seconds": round(seconds, 3), "reused": False})
        if "llm" in output.facts:
            self.llm_stats.append(output.facts["llm"])
        log.info("%s: stage %s done in %.1f s", plan.key, stage.name, seconds)


    def finish_shard(self, plan: ModelPlan, stage: Stage, index: int, record: dict[str, Any], seconds: float, node: str) -> None:
        """Note a shard done ahead of its stage (the shard itself is on disk, under the cache, already)."""
        self.shard_runs.append({"model": plan.key, "stage": stage.name, "shard": index, "node": node,
                                "images": record.get("n_images"), "reused": record.get("reused"), "seconds": round(seconds, 3)})
        log.info("%s: %s shard %d done on node %s in %.1f s", plan.key, stage.name, index, node[:8], seconds)


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
    """Reuse what is on disk, as far down each model's chain as it stays valid."""
    plans = []
    for entry in state.spec.models:
        plan = ModelPlan(entry, state.spec.chain_config(entry))
        for stage in enabled_stages(plan.config):
            state.lookup(plan, stage)  # a stage whose inputs were not reused is not looked up
        plans.append(plan)
    return plans


# --------------------------------------------------------------------------------------------------------
# Local mode: every stage in this process, one model at a time.


def run_local(state: JobState, plans: list[ModelPlan], show_progress: bool = True) -> None:
    import gc

    threads = max(1, int(state.spec.resources.cpus_per_model)) if state.spec.resources.device == "cpu" else None
    for plan in plans:
        runner = ModelRunner(plan.config, threads=threads, progress=show_progress) if plan.needs_model else None
        while (stage := plan.next_stage()) is not None:
            inputs = plan.inputs(stage)
            t0 = time.perf_counter()
            output = runner.run(stage.name, inputs) if stage.uses_model else \
                run_stage(stage.name, StageContext(plan.config, None, show_progress), inputs)
            state.finish(plan, stage, inputs, output, time.perf_counter() - t0)
        del runner
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
    checks = [s.get("judge_validation") or {} for s in stats]
    judges = {name: v for c in checks for name, v in (c.get("judges") or {}).items()}
    return {"requests": total["requests"], "cache_hits": total["hits"], "cache_misses": total["misses"],
            "tokens_in": total["tokens_in"], "tokens_out": total["tokens_out"], "cost_usd": round(total["cost_usd"], 6),
            "cost_avoided_usd": round(total["cost_avoided_usd"], 6), "score_stages_reused": total["stages_reused"],
            "judge_validated": bool(checks) and all(c.get("validated") for c in checks), "judge_validation": judges}


def gather(state: JobState, plans: list[ModelPlan], wall_s: float, mode: str) -> JobOutcome:
    spec = state.spec
    run_dir = spec.run_dir
    layout = RunDir(run_dir)
    tables: dict[str, list[pl.DataFrame]] = {}
    for plan in plans:
        for stage in plan.stages:
            for name, df in plan.done[stage].tables.items():
                tables.setdefault(name, []).append(df)
    precision = {plan.key: _stage_precision(plan) for plan in plans}
    merged = {name: pl.concat(frames, how="vertical_relaxed") for name, frames in tables.items()}
    if "judge_validation" in merged:  # the same judges on the same gold pairs for every model: one row per judge
        merged["judge_validation"] = merged["judge_validation"].unique(maintain_order=True)
    if "ground_truth" in merged:  # a toy probe set: compare the method with the known factors

        merged.update(toy_tables(merged))
    if "direct_ablation" in merged:  # the planted-concept benchmark: every check against its null
        random_init = {p.key: is_random_init_model(p.entry.arch, p.entry.pretrained) for p in plans}
        merged.update(benchmark_tables(merged, random_init, run_plan(list(random_init)), world=world_of_probe(spec.probe.images)))
    paths = {}
    for name, df in merged.items():
        paths[name] = write_table(df, layout.table(name),
                                  {"run": spec.run, "spec_hash": spec.spec_hash(), "stage_precision": precision})
    models = []
    for plan in plans:
        meta = plan.done["spans"].facts.get("metadata", {})
        models.append({"model": plan.key, "arch": plan.entry.arch, "pretrained": plan.entry.pretrained,
                       "random_init": is_random_init_model(plan.entry.arch, plan.entry.pretrained), **{k: meta.get(k) for k in ("num_layers", "num_heads", "embed_dim")},
                       "stage_precision": precision[plan.key]})
    skipped = []
    for plan in plans:
        meta = plan.done["spans"].facts.get("metadata", {})
        if meta.get("skipped_images"):
            skipped.append({"model": plan.key, "skipped_images": meta["skipped_images"]})
    ccs = pl.concat([p.table("score", "ccs") for p in plans], how="vertical_relaxed")
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
        "shards": state.shard_runs,
        "llm": _llm_totals(state.llm_stats),
        "failures": {"failed_verdicts": failed, "skipped_files": skipped, "flagged_heads": flagged},
        "tables": {name: layout.rel(p) for name, p in paths.items()},
        "wall_s": round(wall_s, 3),
        "run_dir": display(spec.run_root),
    }
    atomic_write_json(layout.manifest, manifest)
    report = _write_report(run_dir)
    _publish_run(spec)
    return JobOutcome(run_dir, paths, report, summarize(manifest, report), wall_s)


def _publish_run(spec: JobSpec) -> None:
    """With a remote ``out``: the run's tables, report and manifest (last) to it; its stages are there already."""
    remote = remote_root(spec.run_root)
    if remote is not None:
        remote.publish_dir(spec.run_dir, "", RunDir.is_manifest, include=lambda name: not RunDir.is_stage_file(name))
        log.info("run published to %s", remote.uri)


def _flagged(tables: dict[str, list[pl.DataFrame]]) -> list[dict[str, str]]:
    """Heads without a label or with a failed verdict (left out of every head set), with the first reason."""
    if "labels" not in tables or "judgments" not in tables:
        return []
    return flagged_heads(pl.concat(tables["labels"], how="vertical_relaxed"), pl.concat(tables["judgments"], how="vertical_relaxed"))


def _redacted_spec(spec: JobSpec) -> dict[str, Any]:
    """The spec as the manifest shows it: endpoint URLs without credentials or query values."""
    data = spec.model_dump(mode="json")
    for ep in (data["llm"]["labeler"], *data["llm"]["judges"]):
        ep["base_url"] = redact_url(ep["base_url"])
    return data


def _stage_precision(plan: ModelPlan) -> dict[str, str]:
    """What each stage of a model computed in (the spans stage records it; older stages fall back to the model's)."""
    meta = plan.done["spans"].facts.get("metadata", {})
    return meta.get("stage_precision") or {"decompose": meta.get("precision"), "evaluate": meta.get("precision")}


def _write_report(run_dir: Path) -> Path | None:
    try:
        from ccs_dist.stages.report import report_stage  # lazy: optional, an install may lack the report (the door `ccs-dist report` uses)
    except ImportError:
        log.info("no report module installed; tables are in %s", RunDir(run_dir).tables_dir)
        return None
    return report_stage(run_dir)


def judge_lines(llm: dict[str, Any]) -> list[str]:
    """The summary's word on the judges: kappa [95 % interval] on the gold pairs, or that they were not validated."""
    if not llm.get("judge_validated"):
        return ["  JUDGE NOT VALIDATED on the gold pairs (llm.judge_gold_pairs 0, or no valid verdict): "
                "check it with `ccs-dist judge-check`"]
    return [f"  judge {name}: kappa {v['kappa']:.3f} [{v['kappa_lo']:.3f}, {v['kappa_hi']:.3f}] on {v['n']} gold pairs, "
            f"false positives {v['fpr']:.3f}, false negatives {v['fnr']:.3f}" for name, v in llm["judge_validation"].items()]


def summarize(manifest: dict[str, Any], report: Path | None) -> str:
    lines = [f"run {manifest['run']} ({manifest['mode']} mode) finished in {manifest['wall_s']:.1f} s"]
    width = max([9, *(len(t["stage"]) for t in manifest["stages"])])
    for t in manifest["stages"]:
        status = "reused" if t["reused"] else f"{t['seconds']:.1f} s"
        lines.append(f"  {t['model']:<34} {t['stage']:<{width}} {status}")
    llm = manifest["llm"]
    lines.append(
        f"  LLM: {llm['requests']} requests, {llm['cache_hits']} cache hits, {llm['cache_misses']} misses, "
        f"tokens {llm['tokens_in']}/{llm['tokens_out']}, cost ${llm['cost_usd']:.4f}, "
        f"avoided by the cache ${llm['cost_avoided_usd']:.4f}, score stages reused {llm['score_stages_reused']}"
    )
    lines += judge_lines(llm)
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


def prepare_data(spec: JobSpec) -> None:
    """With ``evaluation.synthetic``, the synthetic datasets of the evaluation (and attribution) tasks, once."""
    if not spec.evaluation.synthetic:
        return
    tasks = list(spec.evaluation.tasks) + ([spec.attribution.task] if spec.attribution.enabled else [])
    tasks += list(spec.card.tasks) if spec.card.enabled else []
    prepare_synthetic_data(tasks, spec.data_root)


def check_inputs(spec: JobSpec) -> None:
    """Input files the driver can check before any stage runs (the pool is read when planning)."""
    ev = spec.evaluation
    if ev.occupations and any(t.partition("@")[0] in ("fairface", "socialcounterfactuals") for t in ev.tasks):

        read_occupations(ev.occupations)


def run_job(spec: JobSpec, mode: str = "local", force: tuple[str, ...] = (), show_progress: bool = True, address: str | None = None) -> JobOutcome:
    check_root("out (--out)", spec.run_root)  # up front: not after the spans stage ran
    check_root("cache_dir (--cache-dir)", spec.cache_dir)
    t0 = time.perf_counter()
    state = JobState(spec, force)
    check_inputs(spec)
    prepare_data(spec)
    plans = plan_models(state)
    todo = sum(plan.needs(s) for plan in plans for s in plan.stages)
    total = sum(len(plan.stages) for plan in plans)
    log.info("run %s: %d models, %d stages to run, %d reused", spec.run, len(plans), todo, total - todo)
    if todo:
        if mode == "local":
            run_local(state, plans, show_progress)
        else:
            from ccs_dist.distributed.executor import run_ray  # lazy: Ray, a heavy optional dependency, only in Ray mode

            run_ray(state, plans, address=address, show_progress=show_progress)
    return gather(state, plans, time.perf_counter() - t0, mode)
