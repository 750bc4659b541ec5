"""The offline labeler and judge, side by side for both scorings (``cosine``, ``normalised``), on labelled text
that no model run produced. Last line: JSON.

Judge: balanced accuracy over every (description, family name) pair of the default pool, at the threshold
calibrated on the same pool (in-sample, what the backend ships) and two-fold (threshold and hub statistics from
one half of each family's descriptions, scored on the other half); then on the toy pool's lines against their
factor names (colour, shape, position, size, texture) at the default-pool threshold.

Labeler: synthetic heads of five descriptions, 3, 4 or 5 of one family and the rest from other families,
shuffled; a label is right when the concept map reads the head's family in it. Default-pool heads use the
families the concept map knows; toy heads mix the toy lines.

    python bench/offline_judge.py                  # minilm, 60 heads per family
    python bench/offline_judge.py --embedder clip:ccs-toy/planted_v2 --heads 30
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ccs_dist.ccs.head_sets import label_families, load_concept_map  # noqa: E402
from ccs_dist.llm.calibration import balanced_accuracy, best_threshold, calibrate, family_scores  # noqa: E402
from ccs_dist.llm.config import SCORINGS  # noqa: E402
from ccs_dist.llm.offline import ConceptScorer, EmbeddingLabeler, get_embedder  # noqa: E402
from ccs_dist.text.pool import default_pool  # noqa: E402
from ccs_dist.data.toy.pool import toy_lines  # noqa: E402


def halves(texts: Sequence[str], families: Sequence[str]) -> tuple[list[int], list[int]]:
    """Every family's descriptions split alternately into two folds."""
    seen: dict[str, int] = {}
    a, b = [], []
    for i, f in enumerate(families):
        (a if seen.get(f, 0) % 2 == 0 else b).append(i)
        seen[f] = seen.get(f, 0) + 1
    return a, b


def synthetic_heads(texts, families, keep, per_family: int, seed: int) -> list[tuple[list[str], str]]:
    by: dict[str, list[str]] = {}
    for t, f in zip(texts, families):
        by.setdefault(f, []).append(t)
    rng = random.Random(seed)
    heads = []
    for f in sorted(keep):
        others = sorted(g for g in by if g != f)
        for i in range(per_family):
            m = min((3, 4, 5)[i % 3], len(by[f]))
            head = rng.sample(by[f], m) + [rng.choice(by[rng.choice(others)]) for _ in range(5 - m)]
            rng.shuffle(head)
            heads.append((head, f))
    return heads


def label_accuracy(labeler: EmbeddingLabeler, heads, concept_map) -> float:
    return float(np.mean([f in label_families(labeler.label_now(h).label, concept_map) for h, f in heads]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--heads", type=int, default=60, help="synthetic heads per family")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    embedder = get_embedder(args.embedder)
    pool = default_pool()
    texts, families = list(pool.texts), list(pool.families)
    toy_texts, toy_factors = (list(x) for x in zip(*toy_lines()))
    concept_map = load_concept_map()
    pool_heads = synthetic_heads(texts, families, {f for f in families if f in concept_map}, args.heads, args.seed)
    toy_heads = synthetic_heads(toy_texts, toy_factors, set(toy_factors), args.heads, args.seed + 1)
    fold_a, fold_b = halves(texts, families)

    out: dict = {"embedder": args.embedder, "default_pool": {"descriptions": len(texts), "families": len(set(families))},
                 "toy_lines": len(toy_texts), "pool_heads": len(pool_heads), "toy_heads": len(toy_heads)}
    for scoring in SCORINGS:
        scorer = ConceptScorer(embedder, scoring, reference=texts)
        cal = calibrate(scorer, texts, families)
        thr = cal.threshold
        folds = []
        for fit, held in ((fold_a, fold_b), (fold_b, fold_a)):
            half = ConceptScorer(embedder, scoring, reference=[texts[i] for i in fit])
            s_fit, o_fit = family_scores(half, [texts[i] for i in fit], [families[i] for i in fit])
            s_held, o_held = family_scores(half, [texts[i] for i in held], [families[i] for i in held])
            folds.append(balanced_accuracy(s_held, o_held, best_threshold(s_fit, o_fit)[0]))
        toy_TO, toy_own_TO = family_scores(scorer, toy_texts, toy_factors)
        toy_fit_TO = toy_TO >= thr
        labeler = EmbeddingLabeler(scorer)
        out[scoring] = {
            "threshold": round(thr, 4),
            "judge_balanced_accuracy": round(cal.balanced_accuracy, 3),
            "judge_balanced_accuracy_2fold": round(float(np.mean(folds)), 3),
            "nearest_family_accuracy": round(cal.nearest_family_accuracy, 3),
            "toy_judge_balanced_accuracy": round(balanced_accuracy(toy_TO, toy_own_TO, thr), 3),
            "toy_true_positive_rate": round(float(toy_fit_TO[toy_own_TO].mean()), 3),
            "toy_true_negative_rate": round(float((~toy_fit_TO[~toy_own_TO]).mean()), 3),
            "label_accuracy_pool_heads": round(label_accuracy(labeler, pool_heads, concept_map), 3),
            "label_accuracy_toy_heads": round(label_accuracy(labeler, toy_heads, concept_map), 3),
        }
        print(f"{scoring:>10}: " + ", ".join(f"{k} {v}" for k, v in out[scoring].items()), flush=True)
    c, n = out["cosine"], out["normalised"]
    out["ratio_judge_error_2fold"] = round((1 - n["judge_balanced_accuracy_2fold"]) / (1 - c["judge_balanced_accuracy_2fold"]), 3)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
