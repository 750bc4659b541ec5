"""What the head card costs per head (images, requests, seconds) beside the score (CCS) stage, on the demo's
models (ccs-toy planted_v2, judged by the random-init copy as in the demo spec). Last line: JSON.

Runs the chain's own stages (spans, score, card) through :class:`ccs_dist.stages.chain.ModelRunner`, each
timed best-of-``--repeats`` (:func:`bench.timing.timed`); the card's parts (reference pass, intervals,
specificity) come from its stage facts.

    python bench/card.py                      # the demo's card settings
    python bench/card.py --resamples 0 --no-tasks --repeats 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.timing import timed  # noqa: E402
from ccs_dist.jobs.spec import load_spec  # noqa: E402
from ccs_dist.stages import chain  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=int, default=0, help="index of the demo spec's model")
    ap.add_argument("--resamples", type=int, default=None, help="card.resamples (default: the demo's)")
    ap.add_argument("--no-tasks", action="store_true", help="no intervention specificity")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cache-dir", default=None, help="cache root (default: a fresh temporary folder)")
    args = ap.parse_args(argv)
    cache = args.cache_dir or tempfile.mkdtemp(prefix="bench-card-")
    spec = load_spec("demo", {"cache_dir": cache, "out": str(Path(cache) / "out")})
    from ccs_dist.jobs.pipeline import prepare_data

    prepare_data(spec)
    config = spec.chain_config(spec.models[args.model])
    card = config.card
    if args.resamples is not None:
        card = dataclasses.replace(card, resamples=args.resamples)
    if args.no_tasks:
        card = dataclasses.replace(card, tasks=())
    config = dataclasses.replace(config, card=card)
    runner = chain.ModelRunner(config, progress=False)
    done = {"spans": runner.run("spans", {})}
    score_s, done["score"] = timed(lambda: chain.run_stage("score", runner.context, chain.inputs_of(chain.BY_NAME["score"], done)),
                                   args.repeats, runner.context.loaded.device)
    card_s, card_out = timed(lambda: runner.run("card", chain.inputs_of(chain.BY_NAME["card"], done)), args.repeats,
                             runner.context.loaded.device)
    facts = card_out.facts["card"]
    heads = max(facts["heads"], 1)
    llm = done["score"].facts["llm"]
    score_heads = done["score"].tables["ccs"].height
    rows = {
        "score": {"heads": score_heads, "images": 0, "requests": llm.get("requests", 0),
                  "seconds": round(score_s, 3), "seconds_per_head": round(score_s / max(score_heads, 1), 4)},
        "card": {"heads": facts["heads"], "images": facts["images"] + facts["specificity_tasks"] * (card.task_limit or 0),
                 "requests": facts["requests_bound"], "offline_scorings": facts["offline_scorings"],
                 "seconds": round(card_s, 3), "seconds_per_head": round(card_s / heads, 4),
                 "specificity_seconds": facts.get("specificity_seconds"), "resamples": facts["resamples"]},
    }
    print(f"{'stage':8s} {'heads':>5s} {'images':>7s} {'requests':>8s} {'s':>8s} {'s/head':>8s}")
    for name, r in rows.items():
        print(f"{name:8s} {r['heads']:5d} {r['images']:7d} {r['requests']:8d} {r['seconds']:8.3f} {r['seconds_per_head']:8.4f}")
    print(json.dumps({"model": config.key, "reference": facts["reference"], **rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
