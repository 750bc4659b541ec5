"""The scoring stage: spans -> labels, judgments, CCS and CCS@K (+ request/cache/cost statistics).

``score_spans`` is what the CLI and the orchestration layer call; asyncio stays inside it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from ccs_dist.ccs.scores import HEAD, ccs_at_k, ccs_table
from ccs_dist.artifacts.run_dir import table_file
from ccs_dist.core.errors import UserError
from ccs_dist.core.heads import head_name
from ccs_dist.llm.backends import Judge, Labeler, LabelResult, Verdict
from ccs_dist.llm.config import ScoreConfig
from ccs_dist.artifacts.schemas import (JUDGE_VALIDATION_SCHEMA, JUDGMENTS_SCHEMA, LABELS_SCHEMA, SPANS_REQUIRED,
                                        SPANS_SCHEMA)
from ccs_dist.llm.gold import gold_sample, judge_pairs, validation_summary, validation_table
from ccs_dist.llm.urls import redact_url

log = logging.getLogger(__name__)

# per-head facts the spans stage repeats on each of a head's rows (rank, stability): copied into the ccs table
HEAD_FACTS = tuple(c for c in SPANS_SCHEMA if c not in SPANS_REQUIRED)


@dataclass(frozen=True)
class HeadSpans:
    model: str
    layer: int
    head: int
    texts: tuple[str, ...]  # by rank

    @property
    def name(self) -> str:
        return head_name(self.layer, self.head)


@dataclass(frozen=True)
class ScoreResult:
    labels: pl.DataFrame  # model, layer, head, label, backend, error
    judgments: pl.DataFrame  # model, layer, head, rank, text, label, aligned, judge, error
    ccs: pl.DataFrame  # model, layer, head, label, ccs, n_descriptions, n_failed, flagged, category
    ccs_at_k: pl.DataFrame  # model, k, fraction, n_heads, n_flagged
    stats: dict[str, Any] = field(default_factory=dict)
    judge_validation: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=JUDGE_VALIDATION_SCHEMA))

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the four tables as parquet and ``score_meta.json``; tables first, metadata last."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create output directory {out} ({e.strerror}): pass a writable --out") from e
        paths = {}
        for name in ("labels", "judgments", "ccs", "ccs_at_k", "judge_validation"):
            paths[name] = out / table_file(name)
            tmp = paths[name].with_suffix(".parquet.tmp")
            getattr(self, name).write_parquet(tmp)
            tmp.replace(paths[name])  # nothing half-written under the final name
        paths["meta"] = out / "score_meta.json"
        paths["meta"].write_text(json.dumps(self.stats, indent=2, sort_keys=True, default=str), encoding="utf-8")
        return paths


def read_spans(path: str | Path) -> pl.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"spans table {p} does not exist: pass the spans.parquet written by the textspan stage")
    try:
        return pl.read_parquet(p)
    except Exception as e:  # polars raises several types for non-parquet input
        raise UserError(f"cannot read {p} as parquet ({type(e).__name__}): pass a spans table in parquet format") from e


def validate_spans(spans: pl.DataFrame) -> pl.DataFrame:
    """Check the DESIGN contract (model, layer, head, rank, text, variance); cast ints/floats; sort."""
    missing = [c for c in SPANS_REQUIRED if c not in spans.columns]
    if missing:
        raise UserError(f"spans table lacks column(s) {', '.join(missing)} (has {', '.join(spans.columns)}): "
                        "pass the spans table written by the textspan stage")
    if spans.height == 0:
        raise UserError("spans table is empty: run the textspan stage first")
    try:
        spans = spans.select([pl.col(c).cast(t, strict=True) for c, t in SPANS_REQUIRED.items()])
    except Exception as e:
        raise UserError(f"spans table has a column of the wrong type ({str(e).splitlines()[0][:120]}): expected "
                        "model str, layer/head/rank int, text str, variance float") from e
    if spans.select(pl.col("model", "layer", "head", "rank", "text").is_null().any()).row(0) != (False,) * 5:
        raise UserError("spans table has null model/layer/head/rank/text values: re-run the textspan stage")
    empty = spans.filter(pl.col("text").str.strip_chars() == "")
    if empty.height:
        r = empty.row(0, named=True)
        raise UserError(f"spans table has an empty description (rank {r['rank']} of {r['model']} {head_name(r['layer'], r['head'])}"
                        f"{f' and {empty.height - 1} more' if empty.height > 1 else ''}): every description needs text; "
                        "re-run the textspan stage with a pool without blank lines")
    dup = spans.group_by(["model", "layer", "head", "rank"]).len().filter(pl.col("len") > 1)
    if dup.height:
        r = dup.row(0, named=True)
        raise UserError(f"spans table repeats rank {r['rank']} of {r['model']} {head_name(r['layer'], r['head'])}: one row per (model, layer, head, rank)")
    return spans.sort(["model", "layer", "head", "rank"])


def group_heads(spans: pl.DataFrame) -> list[HeadSpans]:
    g = spans.group_by(HEAD, maintain_order=True).agg(pl.col("text"))
    return [HeadSpans(m, int(l), int(h), tuple(t)) for m, l, h, t in g.iter_rows()]


def score_spans(spans: pl.DataFrame, config: ScoreConfig = ScoreConfig()) -> ScoreResult:
    """Label every head, judge every (description, label) with every judge, compute CCS tables.

    A fatal problem (bad key, unknown model, endpoint down after bounded retries) raises UserError;
    every answer obtained before it is already in the cache.
    """
    thresholds = config.thresholds
    facts = _span_facts(spans)  # effective rank and stability per head, carried into the ccs table
    spans = validate_spans(spans)
    heads = group_heads(spans)
    t0 = time.monotonic()
    if config.backend == "offline":
        labeler, judges, clients = _offline_backends(config, heads)
    elif config.backend == "openai":
        labeler, judges, clients = _chat_backends(config)
    else:
        raise UserError(f"unknown backend {config.backend!r}: use openai or offline")
    if config.max_description_chars < 1:
        raise UserError(f"max_description_chars must be >= 1, got {config.max_description_chars}")
    gold = gold_sample(config.judge_gold_pairs)
    for b in judges:
        if hasattr(b, "prepare"):  # the offline judges: one batched embedding pass
            b.prepare(gold["description"].to_list())
    try:
        results, gold_verdicts, gold_cost = asyncio.run(_score_all(heads, labeler, judges, clients, config, gold))
    finally:
        for c in clients:
            if c.cache is not None:
                c.cache.close()
    labels, judgments = _tables(heads, results, labeler.name, [j.name for j in judges])
    ccs = ccs_table(labels, judgments, thresholds)
    validation = validation_table(judges, gold, gold_verdicts)
    if facts is not None:
        ccs = ccs.join(facts, on=HEAD, how="left")
    max_k = max(len(h.texts) for h in heads)
    at_k = ccs_at_k(ccs, max_k=max_k)
    stats = _stats(config, clients, ccs, time.monotonic() - t0)
    stats["flagged"] = flagged_heads(labels, judgments)
    stats["judge_validation"] = validation_summary(validation, gold.height, gold_cost)
    stats["truncated_descriptions"] = sum(len(t) > config.max_description_chars for h in heads for t in h.texts)
    if stats["flagged"]:
        log.warning("%d head(s) flagged, scored with failed verdicts and left out of CCS@K: %s", len(stats["flagged"]),
                    "; ".join(f"{f['head']} ({f['reason']})" for f in stats["flagged"][:10])
                    + (f"; and {len(stats['flagged']) - 10} more (see score_meta.json)" if len(stats["flagged"]) > 10 else ""))
    if config.backend == "offline":
        stats["offline_thresholds"] = {j.name: j.threshold for j in judges}
        stats["offline_scoring"] = config.offline_scoring
        stats["offline_verdict"] = config.offline_verdict
    log.info(
        "scored %d heads in %.1f s: cache hits %d, misses %d, requests %d, tokens in/out %d/%d, est. cost $%.4f "
        "(avoided by the cache $%.4f), flagged heads %d",
        len(heads), stats["seconds"], stats["hits"], stats["misses"], stats["requests"], stats["tokens_in"],
        stats["tokens_out"], stats["cost_usd"], stats["cost_avoided_usd"], stats["flagged_heads"],
    )
    return ScoreResult(labels, judgments, ccs, at_k, stats, validation)


def require_scored(result: ScoreResult, min_share: float) -> None:
    """A UserError when fewer than ``min_share`` of some model's heads got a CCS (were not flagged): an endpoint
    whose every answer is unusable must fail the stage, not write tables of nulls. The answers stay cached."""
    if not 0.0 <= min_share <= 1.0:
        raise UserError(f"min_scored_share must be between 0 and 1, got {min_share}")
    for (model,), g in result.ccs.group_by("model", maintain_order=True):
        scored = int((~g["flagged"]).sum())
        if scored >= min_share * g.height and scored > 0:
            continue
        reason = next((f["reason"] for f in result.stats.get("flagged", []) if f["head"].startswith(f"{model} ")), "no label")
        raise UserError(
            f"only {scored} of {g.height} heads of {model} got a CCS (min_scored_share {min_share:g}; first reason: "
            f"{' '.join(reason.split())[:200]}): check that the labeler and judges are chat models that follow the prompts "
            "(model name, base URL); every answer is cached, so a re-run asks only what changed (refresh the cache to "
            "re-ask the same endpoint)")


def _span_facts(spans: pl.DataFrame) -> pl.DataFrame | None:
    """One row per head with the :data:`HEAD_FACTS` present in ``spans`` (None for an old table). Polars only:
    importing the spans package would load torch and open_clip, seconds of start-up before the first request."""
    present = [c for c in HEAD_FACTS if c in spans.columns]
    if not present:
        return None
    return spans.group_by(HEAD).agg(pl.col(c).first() for c in present)


def judge_backends(config: ScoreConfig) -> tuple[list[Judge], list]:
    """The judges ``config`` names (and the endpoint clients they use, to be closed by the caller)."""
    if config.backend == "offline":
        _, judges, clients = _offline_backends(config, ())
    elif config.backend == "openai":
        _, judges, clients = _chat_backends(config)
    else:
        raise UserError(f"unknown backend {config.backend!r}: use openai or offline")
    return judges, clients


def _chat_backends(config: ScoreConfig):
    # lazy: openai (the chat client) loads only for a chat backend
    from ccs_dist.llm.backends import ChatHeadJudge, ChatLabeler, ChatPairJudge
    from ccs_dist.llm.cache import AnswerCache
    from ccs_dist.llm.client import EndpointClient

    if not config.judges:
        raise UserError("no judges given: pass at least one with --judges MODEL[@BASE_URL]")
    names = [j.name for j in config.judges]
    if len(set(names)) != len(names):
        raise UserError(f"judge list {names} names one judge twice: give each model@endpoint once")
    cache = None if config.cache == "bypass" else AnswerCache(config.cache_dir)
    by_endpoint: dict[Any, EndpointClient] = {}

    def client(cfg):  # one pool (limiter, semaphore) per distinct endpoint config
        if cfg not in by_endpoint:
            by_endpoint[cfg] = EndpointClient(cfg, cache, config.cache)
        return by_endpoint[cfg]

    labeler = ChatLabeler(client(config.labeler), config.answer_attempts, template=config.label_prompt)
    judge_cls = ChatPairJudge if config.judge_mode == "pair" else ChatHeadJudge
    if config.judge_mode not in ("pair", "head"):
        raise UserError(f"unknown judge mode {config.judge_mode!r}: use pair or head")
    judges = [judge_cls(client(j), config.answer_attempts) for j in config.judges]
    return labeler, judges, list(by_endpoint.values())


def _offline_backends(config: ScoreConfig, heads: Sequence[HeadSpans]):
    from ccs_dist.llm.offline import offline_judge, offline_labeler  # lazy: the offline judge loads torch, chat scoring does not

    specs = config.offline_judges or (config.offline_embedder,)
    if len(set(specs)) != len(specs):
        raise UserError(f"judge list {list(specs)} names one judge twice: give each embedder once")
    labeler = offline_labeler(config.offline_embedder, config.offline_scoring, config.offline_vocabulary_extra)
    judges = [offline_judge(s, config.offline_threshold, config.offline_scoring, config.offline_verdict) for s in specs]
    texts = [t for h in heads for t in capped(h.texts, config.max_description_chars)]
    for b in (labeler, *judges):
        b.prepare(texts)  # one batched embedding pass instead of one per head
    return labeler, judges, []


def capped(texts: Sequence[str], max_chars: int) -> tuple[str, ...]:
    """The descriptions as sent to the LLM: each cut to ``max_chars`` characters (the tables keep them whole)."""
    return tuple(t if len(t) <= max_chars else t[:max_chars].rstrip() + " ..." for t in texts)


def flagged_heads(labels: pl.DataFrame, judgments: pl.DataFrame) -> list[dict[str, str]]:
    """Every head without a label or with a failed verdict, with the first reason: ``{head, reason}``."""
    out: dict[tuple, str] = {}
    for r in labels.filter(pl.col("label").is_null()).iter_rows(named=True):
        out[(r["model"], r["layer"], r["head"])] = r["error"] or "no label"
    for r in judgments.filter(pl.col("aligned").is_null()).iter_rows(named=True):
        out.setdefault((r["model"], r["layer"], r["head"]), f"{r['judge']}: {r['error'] or 'failed verdict'}")
    return [{"head": f"{m} {head_name(l, h)}", "reason": why} for (m, l, h), why in sorted(out.items())]


async def _score_all(heads, labeler: Labeler, judges: Sequence[Judge], clients, config: ScoreConfig, gold: pl.DataFrame):
    """Every head, then every judge on the gold pairs (their requests and cost counted apart), then the clients close."""
    try:
        results = await _score_heads(heads, labeler, judges, config.show_progress, config.max_description_chars)
        before = [c.stats.as_dict() for c in clients]
        gold_verdicts = list(await asyncio.gather(*(judge_pairs(j, gold) for j in judges))) if gold.height else []
        cost = {k: sum(c.stats.as_dict()[k] - b[k] for c, b in zip(clients, before)) for k in ("misses", "requests", "cost_usd")}
        return results, gold_verdicts, cost
    finally:
        for c in clients:
            await c.aclose()


async def _score_heads(heads, labeler: Labeler, judges: Sequence[Judge], show_progress: bool, max_chars: int):
    bar = tqdm(total=len(heads), desc="scoring heads", unit="head", disable=not show_progress, leave=False)
    n_cut = sum(len(t) > max_chars for h in heads for t in h.texts)
    if n_cut:
        log.warning("%d description(s) longer than %d characters are cut to that length before they are sent "
                    "(max_description_chars / --max-description-chars); the tables keep them whole", n_cut, max_chars)

    async def one(h: HeadSpans):
        texts = capped(h.texts, max_chars)
        lab = await labeler.label(texts)
        if lab.label is None:
            verdicts = [[Verdict(None, f"no label: {lab.error}")] * len(h.texts) for _ in judges]
        else:
            verdicts = list(await asyncio.gather(*(j.judge(texts, lab.label) for j in judges)))
        bar.update()
        return lab, verdicts

    tasks = [asyncio.create_task(one(h)) for h in heads]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    finally:
        bar.close()


def _tables(heads, results: Sequence[tuple[LabelResult, list[list[Verdict]]]], backend: str, judge_names):
    label_rows, judg_rows = [], []
    for h, (lab, per_judge) in zip(heads, results):
        label_rows.append({"model": h.model, "layer": h.layer, "head": h.head, "label": lab.label, "backend": backend, "error": lab.error})
        for name, verdicts in zip(judge_names, per_judge):
            for rank, (text, v) in enumerate(zip(h.texts, verdicts)):
                judg_rows.append({"model": h.model, "layer": h.layer, "head": h.head, "rank": rank, "text": text,
                                  "label": lab.label, "aligned": v.aligned, "judge": name, "error": v.error})
    return pl.DataFrame(label_rows, schema=LABELS_SCHEMA), pl.DataFrame(judg_rows, schema=JUDGMENTS_SCHEMA)


def _stats(config: ScoreConfig, clients, ccs: pl.DataFrame, seconds: float) -> dict[str, Any]:
    from ccs_dist.llm.client import PoolStats  # lazy: openai only for a chat backend

    total = PoolStats()
    for c in clients:
        total = total.merge(c.stats)
    cfg = asdict(config)  # holds env-variable names only, never a key's value
    for ep in (cfg["labeler"], *cfg["judges"]):
        ep["base_url"] = redact_url(ep["base_url"])
    return {
        **total.as_dict(),
        "seconds": round(seconds, 3),
        "heads": ccs.height,
        "flagged_heads": int(ccs["flagged"].sum()),
        "per_endpoint": {c.name: c.stats.as_dict() for c in clients},
        "cache_bad_entries": len({k for c in clients if c.cache is not None for k in c.cache.bad_entries}),
        "cache_read_only": any(c.cache is not None and c.cache.read_only for c in clients),
        "config": cfg,
    }
