"""Synthetic run directories in the real on-disk formats, for the report's tests and benchmark.

``make_run(path, models=..., tasks=...)`` writes ``tables/*.parquet`` (spans, labels, judgments, ccs,
ccs_at_k, evaluation, agreement, attribution) and ``manifest.json`` with the columns of DESIGN.md and
the producers (:mod:`ccs_dist.spans.table`, :mod:`ccs_dist.ccs.scores`, :mod:`ccs_dist.evaluate.run`). Values are
random but plausible (seeded): CCS drawn per head, variance explained decreasing with rank, pruning
high-CCS heads hurting more than low-CCS heads, random sets with a spread over seeds.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import polars as pl

from ccs_dist.ccs.scores import PAPER_THRESHOLDS
from ccs_dist.artifacts.schemas import write_table

HOSTILE_LABEL = '<img src=x onerror="document.title=\'pwned\'">'
HOSTILE_TEXT = "<script>window.__pwned=1</script>"

# (architecture, pretrained, layers, heads): the paper's grid; last 4 layers scored
PAPER_GRID = (
    ("ViT-B-32", "openai", 12, 12),
    ("ViT-B-32", "datacomp_m_s128m_b4k", 12, 12),
    ("ViT-B-16", "openai", 12, 12),
    ("ViT-B-16", "laion2b_s34b_b88k", 12, 12),
    ("ViT-L-14", "openai", 24, 16),
    ("ViT-L-14", "laion2b_s32b_b82k", 24, 16),
)
CLASSIFICATION = ("cifar10", "cifar100", "food101", "country211", "oxford_pets", "imagenet_a", "imagenet_r")
RETRIEVAL = ("msrvtt", "msvd", "didemo")
BIAS = ("fairface_race", "fairface_gender")
TEN_TASKS = CLASSIFICATION + RETRIEVAL

CONCEPTS = ("location", "animal", "colour", "texture", "people", "text", "food", "shape")
PHRASES = {
    "location": ["a photo taken in Paris", "aerial view of a coastal city", "a mountain village in Nepal",
                 "a busy street in Tokyo", "desert landscape at dusk", "a tropical beach resort", "a snowy Nordic fjord"],
    "animal": ["a close-up of a tabby cat", "a herd of zebras", "a golden retriever puppy", "a bird perched on a branch",
               "an octopus underwater", "a horse in a field", "a colourful parrot"],
    "colour": ["vivid red tones", "a pastel colour palette", "bright yellow hues", "monochrome blue image",
               "deep purple lighting", "neon green accents", "warm orange glow"],
    "texture": ["rough stone surface", "knitted wool pattern", "glossy metallic sheen", "wood grain close-up",
                "cracked dry mud", "soft velvet fabric", "rusty iron texture"],
    "people": ["a smiling elderly woman", "a group of teenagers", "portrait of a bearded man", "children playing football",
               "a crowd at a concert", "a doctor in scrubs", "a couple dancing"],
    "text": ["a handwritten note", "a street sign with text", "a page of a printed book", "a neon shop sign",
             "graffiti lettering on a wall", "a newspaper headline", "a label on a bottle"],
    "food": ["a plate of sushi", "a freshly baked pizza", "a bowl of ramen", "a chocolate cake", "a fruit salad",
             "a cup of espresso", "tacos on a tray"],
    "shape": ["circular patterns", "sharp triangular forms", "a spiral staircase", "square tiles", "curved arches",
              "hexagonal honeycomb", "zigzag lines"],
}
PAPER_CCS = {  # CCS@K 0..5 of the paper, used as sampling weights so the fixture looks like a real run
    "default": (0.04, 0.07, 0.15, 0.24, 0.26, 0.24),
}


@dataclass(frozen=True)
class FixtureModel:
    arch: str
    pretrained: str | None
    n_layers: int = 12
    n_heads: int = 12
    scored_layers: int = 4

    @property
    def key(self) -> str:
        return f"{self.arch}/{self.pretrained or 'random-init'}"


@dataclass
class FixtureSpec:
    models: Sequence[FixtureModel] = field(default_factory=lambda: (FixtureModel("ViT-B-32", "openai"),))
    tasks: Sequence[str] = ("cifar10", "msrvtt", "fairface_race")
    judges: Sequence[str] = ("gpt-4o-mini@api.openai.com",)
    seeds: Sequence[int] = (0, 1, 2)
    hostile: bool = False  # put hostile HTML/JS into labels, spans, judge errors, task names and the manifest
    failed_heads: int = 1  # heads with one failed verdict per model
    agreement: bool = True
    attribution: bool = True
    head_images: bool = True  # head_images + head_thumbnails tables (top/bottom 5 images per head, 1 direction)
    probe_images: int = 2000  # probe set the head images are drawn from (little sharing between heads: a page-size worst case)
    seed: int = 0
    run: str = "demo"


def paper_models(n: int = 6) -> tuple[FixtureModel, ...]:
    return tuple(FixtureModel(a, p, nl, nh) for a, p, nl, nh in PAPER_GRID[:n])


def make_run(path: str | Path, spec: FixtureSpec = FixtureSpec()) -> Path:
    """Write a realistic run directory at ``path`` and return it."""
    rng = random.Random(spec.seed)
    root = Path(path)
    tables = root / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    spans, labels, judgments, ccs_rows, at_k, evaluation, attribution = [], [], [], [], [], [], []
    for mi, m in enumerate(spec.models):
        layers = range(m.n_layers - m.scored_layers, m.n_layers)
        heads = [(layer, h) for layer in layers for h in range(m.n_heads)]
        failed = set(rng.sample(heads, min(spec.failed_heads, len(heads))))
        hostile_head = heads[-1] if spec.hostile else None
        head_ccs = {}
        for layer, h in heads:
            concept = rng.choice(CONCEPTS)
            label = f"{concept.capitalize()} ({rng.choice(['scenes', 'details', 'cues', 'patterns'])})"
            if (layer, h) == hostile_head:
                label = HOSTILE_LABEL
            target = rng.choices(range(6), weights=PAPER_CCS["default"])[0]
            if m.pretrained is None:
                target = rng.choices(range(6), weights=(0.5, 0.3, 0.1, 0.05, 0.03, 0.02))[0]
            aligned_ranks = set(rng.sample(range(5), target))
            var = sorted((rng.uniform(0.005, 0.12) for _ in range(5)), reverse=True)
            others = [c for c in CONCEPTS if c != concept]
            n_aligned, n_failed = 0, 0
            for r in range(5):
                pool = PHRASES[concept] if r in aligned_ranks else PHRASES[rng.choice(others)]
                text = rng.choice(pool)
                if (layer, h) == hostile_head and r == 0:
                    text = HOSTILE_TEXT
                spans.append({"model": m.key, "layer": layer, "head": h, "rank": r, "text": text, "variance": var[r]})
                fail = (layer, h) in failed and r == 4
                votes = []
                for judge in spec.judges:
                    if fail:
                        err = "HTTP 500 after 8 attempts" if not spec.hostile else "<b>bad gateway</b><script>window.__pwned=2</script>"
                        votes.append(None)
                        judgments.append({"model": m.key, "layer": layer, "head": h, "rank": r, "text": text, "label": label,
                                          "aligned": None, "judge": judge, "error": err})
                        continue
                    v = (r in aligned_ranks) if rng.random() > 0.08 or len(spec.judges) == 1 else (r not in aligned_ranks)
                    votes.append(v)
                    judgments.append({"model": m.key, "layer": layer, "head": h, "rank": r, "text": text, "label": label,
                                      "aligned": v, "judge": judge, "error": None})
                valid = [v for v in votes if v is not None]
                if len(valid) * 2 > len(votes):
                    n_aligned += int(sum(valid) * 2 > len(valid))
                else:
                    n_failed += 1
            flagged = n_failed > 0
            cat = PAPER_THRESHOLDS.category(n_aligned, flagged)
            head_ccs[(layer, h)] = n_aligned
            labels.append({"model": m.key, "layer": layer, "head": h, "label": label, "backend": "openai:gpt-4o-mini"})
            ccs_rows.append({"model": m.key, "layer": layer, "head": h, "label": label, "ccs": n_aligned, "n_descriptions": 5,
                             "n_failed": n_failed, "flagged": flagged, "category": cat})
        ok = [c for (lh, c) in head_ccs.items() if lh not in failed]
        for k in range(6):
            at_k.append({"model": m.key, "k": k, "fraction": sum(c == k for c in ok) / len(ok), "n_heads": len(ok),
                         "n_flagged": len(heads) - len(ok)})
        n_high = sum(1 for r in ccs_rows if r["model"] == m.key and r["category"] == "high")
        n_low = sum(1 for r in ccs_rows if r["model"] == m.key and r["category"] == "low")
        for task in spec.tasks:
            evaluation += _eval_rows(rng, m, task, n_high, n_low, spec.seeds)
        if spec.attribution:
            for ds in ("cifar10",):
                for cls in ("airplane", "cat", "ship"):
                    for layer, h in heads:
                        value = rng.gauss(0, 1) * (1 + head_ccs[(layer, h)] / 3)
                        if (layer, h) == hostile_head:
                            value = 50.0  # the top head of the attribution table, so that section shows its label
                        attribution.append({"model": m.key, "dataset": ds, "class": cls, "layer": layer, "head": h,
                                            "method": "direct_effect", "value": value})
    if spec.hostile:
        evaluation = [{**r, "task": HOSTILE_TEXT} if r["task"] == spec.tasks[0] else r for r in evaluation]

    frames = {
        "spans": pl.DataFrame(spans, schema={"model": pl.String, "layer": pl.Int64, "head": pl.Int64, "rank": pl.Int64,
                                             "text": pl.String, "variance": pl.Float64}),
        "labels": pl.DataFrame(labels),
        "judgments": pl.DataFrame(judgments, schema={"model": pl.String, "layer": pl.Int64, "head": pl.Int64, "rank": pl.Int64,
                                                     "text": pl.String, "label": pl.String, "aligned": pl.Boolean,
                                                     "judge": pl.String, "error": pl.String}),
        "ccs": pl.DataFrame(ccs_rows),
        "ccs_at_k": pl.DataFrame(at_k),
        "evaluation": pl.DataFrame(evaluation, schema={"model": pl.String, "task": pl.String, "condition": pl.String,
                                                       "seed": pl.Int64, "n_pruned": pl.Int64, "metric": pl.String,
                                                       "value": pl.Float64}),
    }
    if spec.agreement:
        agree = []
        for metric, value in (("cohen_kappa", 0.71), ("spearman_rho", 0.74), ("kendall_tau", 0.73), ("raw_agreement", 0.88)):
            agree.append({"judge_a": "human", "judge_b": spec.judges[0], "metric": metric, "value": value})
        frames["agreement"] = pl.DataFrame(agree)
    if spec.attribution:
        frames["attribution"] = pl.DataFrame(attribution)
    if spec.head_images:
        frames.update(_head_image_frames(rng, spec, HOSTILE_TEXT if spec.hostile else None))
    for name, df in frames.items():
        write_table(df, tables / f"{name}.parquet")

    run_name = spec.run if not spec.hostile else f"{spec.run} {HOSTILE_TEXT}"
    manifest = {
        "run": run_name,
        "spec": {"name": run_name, "models": [m.key for m in spec.models], "tasks": list(spec.tasks),
                 "layers": 4, "m": 5, "judges": list(spec.judges), "seeds": list(spec.seeds)},
        "versions": {"ccs_dist": "0.1.0", "torch": "2.14.1", "open_clip": "3.3.0"},
        "models": [{"model": m.key, "random_init": m.pretrained is None, "arch": m.arch, "pretrained": m.pretrained}
                   for m in spec.models],
        "stages": [
            *({"model": m.key, "stage": st, "seconds": round(rng.uniform(2, 300), 1), "reused": st == "decompose" and i % 2 == 0}
              for i, m in enumerate(spec.models) for st in ("decompose", "textspan", "label", "judge", "evaluate")),
            {"model": None, "stage": "report", "seconds": 0.8, "reused": False},
        ],
        "llm": {"requests": 1840, "cache_hits": 612, "cache_misses": 1228, "tokens_in": 812_345, "tokens_out": 9_876,
                "cost_usd": 0.128, "cost_avoided_usd": 0.043},
        "failures": {"failed_verdicts": sum(1 for j in judgments if j["aligned"] is None),
                     "skipped_files": ["probe/broken_0007.jpg", "probe/truncated_0113.png"]
                     + ([f"probe/{HOSTILE_LABEL}.jpg"] if spec.hostile else [])},
        "tables": {name: f"tables/{name}.parquet" for name in frames},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return root


def _eval_rows(rng: random.Random, m: FixtureModel, task: str, n_high: int, n_low: int, seeds: Sequence[int]) -> list[dict]:
    rows: list[dict] = []

    def add(condition: str, seed: int | None, n: int, metrics: dict[str, float]) -> None:
        for metric, value in metrics.items():
            rows.append({"model": m.key, "task": task, "condition": condition, "seed": seed, "n_pruned": n,
                         "metric": metric, "value": value})

    if task in RETRIEVAL:
        base = rng.uniform(18, 50)

        def metrics(drop: float) -> dict[str, float]:
            r1 = max(base - drop, 0.5)
            out = {}
            for d in ("t2v", "v2t"):
                r = r1 * rng.uniform(0.9, 1.1)
                out.update({f"{d}_R@1": r, f"{d}_R@5": min(r * 2.1, 99), f"{d}_R@10": min(r * 2.7, 99),
                            f"{d}_R@50": min(r * 3.6, 100), f"{d}_MedR": max(1.0, round(60 / r)), f"{d}_MeanR": 300 / r})
            out["n"] = 1000.0
            return out
    elif task in BIAS or task.startswith(("fairface", "socialcounterfactuals")):
        base = rng.uniform(40, 65)

        def metrics(drop: float) -> dict[str, float]:
            s = max(base - drop, 0.0)
            return {"maxskew@10_sum": s, "maxskew@10_mean": s / 104, "ndkl@10_sum": s / 3, "ndkl@10_mean": s / 312, "n": 10954.0}
    else:
        base = rng.uniform(20, 90)

        def metrics(drop: float) -> dict[str, float]:
            t1 = max(base - drop, 0.1)
            return {"top1": t1, "top5": min(t1 + rng.uniform(10, 20), 100.0), "n": 10000.0}

    scale = 1.0 if m.pretrained else 0.1
    add("original", None, 0, metrics(0))
    add("high", None, n_high, metrics(rng.uniform(3, 15) * scale))
    add("low", None, n_low, metrics(rng.uniform(0.5, 4) * scale))
    add("moderate", None, n_high, metrics(rng.uniform(1, 6) * scale))
    rand = [metrics(rng.uniform(0.5, 6) * scale) for _ in seeds]
    for s, mt in zip(seeds, rand):
        add("random", s, n_high, mt)
    for stat in ("mean", "std"):
        agg = {}
        for metric in rand[0]:
            vals = [r[metric] for r in rand]
            mu = sum(vals) / len(vals)
            sd = (sum((v - mu) ** 2 for v in vals) / max(len(vals) - 1, 1)) ** 0.5
            agg[metric] = mu if stat == "mean" else sd
        add(f"random:{stat}", None, n_high, agg)
    n_eq = min(n_high, n_low)
    add("equal:high", None, n_eq, metrics(rng.uniform(2, 10) * scale))
    add("equal:low", None, n_eq, metrics(rng.uniform(0.3, 3) * scale))
    for concept in ("location", "animal"):
        add(f"concept:{concept}", None, rng.randint(2, 6), metrics(rng.uniform(0.5, 9) * scale))
    return rows


def _head_image_frames(rng: random.Random, spec: FixtureSpec, hostile: str | None) -> dict[str, pl.DataFrame]:
    """Top and bottom 5 probe images per scored head (direction 0), drawn from ``spec.probe_images`` synthetic
    images, and their real thumbnails (:func:`ccs_dist.report.head_images.thumbnail_uri`)."""
    from ccs_dist.spans.head_images import HEAD_IMAGES_SCHEMA
    from ccs_dist.report.head_images import THUMBNAILS_SCHEMA, thumbnail_uri
    from ccs_dist.data.synthetic_images import image_rng, render_synthetic_image

    rows = []
    for m in spec.models:
        for layer in range(m.n_layers - m.scored_layers, m.n_layers):
            for h in range(m.n_heads):
                picked = rng.sample(range(spec.probe_images), 10)
                for i, index in enumerate(picked):
                    sign, rank = (1, i) if i < 5 else (-1, i - 5)
                    image_id = f"probe/{index:06d}.png" if hostile is None or (layer, h, i) != (m.n_layers - 1, m.n_heads - 1, 0) \
                        else f"probe/{hostile}.png"
                    rows.append((m.key, layer, h, 0, rank, sign, image_id, sign * (0.3 - 0.02 * rank) * rng.uniform(0.8, 1.2)))
    table = pl.DataFrame(rows, schema=HEAD_IMAGES_SCHEMA, orient="row")
    thumbs = []
    for image_id in sorted(set(table["image_id"].to_list())):
        if hostile is not None and hostile in image_id:
            thumbs.append((image_id, "javascript:window.__pwned=3"))  # never an image: the report must drop it
            continue
        image, _ = render_synthetic_image(image_rng(spec.seed, int(image_id[6:12])), 96)
        thumbs.append((image_id, thumbnail_uri(image)))
    return {"head_images": table, "head_thumbnails": pl.DataFrame(thumbs, schema=THUMBNAILS_SCHEMA, orient="row")}
