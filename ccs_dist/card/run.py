"""The head card of one model: every labelled head's image-grounded scores beside its CCS (the tables
``head_scores`` and ``score_agreement``, schemas in :mod:`ccs_dist.artifacts.schemas`).

Per head with a label (activations: :mod:`.activations`; the judge's evidence: :mod:`.reference`; the scores and
their nulls: :mod:`.scores`):

* ``detection_auroc`` / ``detection_balanced_accuracy``: positives are the head's ``top_images`` held-out images
  along its first principal direction and the ``top_images`` along its label's text direction (the union),
  negatives ``random_images`` random held-out images outside them;
* ``simulation_rho``: Spearman over every held-out image of the label-direction activation against the
  reference similarity to the label prompt;
* ``monosemanticity``: coherence of the top images along the first principal direction, weighted by activation;
* ``ccs`` and ``ccs_weighted`` (5 x the variance share of aligned spans) from the score stage's tables.

``lo``/``hi`` stay null here (the intervals are those of :mod:`ccs_dist.card.intervals` where computed);
``null_value`` is each score's null mean, ``n`` the images (descriptions for CCS) it is computed on.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ccs_dist.artifacts.schemas import CARD_SCORES, HEAD_SCORES_SCHEMA, SCORE_AGREEMENT_SCHEMA
from ccs_dist.card import scores as S
from ccs_dist.card.activations import Split, head_activations
from ccs_dist.card.config import CardConfig
from ccs_dist.card.reference import evidence
from ccs_dist.ccs.scores import spearman_rho
from ccs_dist.toy.outcomes import weighted_ccs

HEAD = ["model", "layer", "head"]


@dataclass(frozen=True)
class CardInputs:
    """What the scores read, all arrays: ``terms_NLHE`` the normalised head terms of the probe images (layers in
    ``layers`` order), ``label_TE`` the audited model's unit text embeddings of ``labels``, ``ref_NE`` the
    reference embeddings of the held-out images (``split.heldout_N`` order), ``sim_NT`` their label similarities
    (:func:`ccs_dist.card.reference.label_similarities`)."""

    model: str
    layers: tuple[int, ...]
    terms_NLHE: np.ndarray
    split: Split
    labels: list[str]
    label_TE: np.ndarray
    ref_NE: np.ndarray
    sim_NT: np.ndarray
    facts: dict[str, Any] = field(default_factory=dict)


def _row(model, layer, head, label, score, value, null=None, n=None) -> dict:
    return {"model": model, "layer": layer, "head": head, "label": label, "score": score, "value": value, "lo": None,
            "hi": None, "null_value": null, "n": n}


def head_image_scores(inputs: CardInputs, layer: int, head: int, label: str, config: CardConfig) -> list[dict]:
    """The detection, simulation and monosemanticity rows of one head (module doc)."""
    rng = np.random.default_rng([config.seed, layer, head])
    x_NE = inputs.terms_NLHE[:, inputs.layers.index(layer), head]
    act = head_activations(x_NE, inputs.split, inputs.label_TE[inputs.labels.index(label)])
    n_held = len(inputs.split.heldout_N)
    pool = np.arange(n_held)  # positions among the held-out images
    k = min(config.top_images, n_held // 4)
    top_pc1 = np.argsort(-act["pc1"], kind="stable")[:k]
    top_label = np.argsort(-act["label"], kind="stable")[:k]
    positives = np.union1d(top_pc1, top_label)
    rest = np.setdiff1d(pool, positives)
    negatives = rng.choice(rest, min(config.random_images, len(rest)), replace=False)
    ev_N = evidence(inputs.sim_NT, inputs.labels, label)
    det = S.detection(ev_N, positives, negatives, pool, config.null_draws, rng)
    rho, rho_null = S.simulation(act["label"], inputs.sim_NT[:, inputs.labels.index(label)], config.null_draws, rng)
    mono, mono_null = S.monosemanticity(inputs.ref_NE, top_pc1, act["pc1"][top_pc1], pool, config.null_draws, rng)
    m, n_det = inputs.model, len(positives) + len(negatives)
    return [_row(m, layer, head, label, "detection_auroc", det["auroc"][0], det["auroc"][1], n_det),
            _row(m, layer, head, label, "detection_balanced_accuracy", *det["balanced_accuracy"], n_det),
            _row(m, layer, head, label, "simulation_rho", rho, rho_null, n_held),
            _row(m, layer, head, label, "monosemanticity", mono, mono_null, len(top_pc1))]


def ccs_rows(ccs: pl.DataFrame, spans: pl.DataFrame, judgments: pl.DataFrame) -> list[dict]:
    """``ccs`` (null: none given) and ``ccs_weighted`` rows of every unflagged head with a label."""
    weighted = weighted_ccs(spans, judgments)
    joined = ccs.filter(~pl.col("flagged") & pl.col("label").is_not_null()).join(weighted, on=HEAD, how="left")
    rows = []
    for r in joined.iter_rows(named=True):
        rows.append(_row(r["model"], r["layer"], r["head"], r["label"], "ccs", float(r["ccs"]), None, r["n_descriptions"]))
        rows.append(_row(r["model"], r["layer"], r["head"], r["label"], "ccs_weighted", r["ccs_weighted"], None, r["n_descriptions"]))
    return rows


def head_scores_table(inputs: CardInputs, ccs: pl.DataFrame, spans: pl.DataFrame, judgments: pl.DataFrame,
                      config: CardConfig) -> pl.DataFrame:
    """The ``head_scores`` table (module doc) of every unflagged labelled head of ``ccs``."""
    rows = ccs_rows(ccs, spans, judgments)
    heads = ccs.filter(~pl.col("flagged") & pl.col("label").is_not_null()).filter(pl.col("layer").is_in(list(inputs.layers)))
    for r in heads.iter_rows(named=True):
        rows += head_image_scores(inputs, r["layer"], r["head"], r["label"], config)
    df = pl.DataFrame(rows, schema=HEAD_SCORES_SCHEMA, orient="row")
    return df.with_columns(pl.col("value").fill_nan(None)).sort(HEAD + ["score"])


def specificity_rows(model: str, heads: dict, scores: dict, score: str) -> list[dict]:
    """``score`` rows from :func:`ccs_dist.card.specificity.specificity_scores` (``heads``: (layer, head) -> label)."""
    return [_row(model, layer, head, heads[(layer, head)], score, value, null, n)
            for (layer, head), (value, null, n) in sorted(scores.items())]


def score_agreement_table(head_scores: pl.DataFrame) -> pl.DataFrame:
    """Per model and pair of scores: Spearman over the heads that have both (``n`` of them)."""
    rows = []
    for (model,), df in head_scores.group_by(["model"], maintain_order=True):
        wide = df.pivot(on="score", index=["layer", "head"], values="value")
        present = [s for s in CARD_SCORES if s in wide.columns]
        for a, b in itertools.combinations(present, 2):
            both = wide.select(a, b).drop_nulls()
            rho = spearman_rho(both[a].to_numpy(), both[b].to_numpy()) if both.height >= 3 else float("nan")
            rows.append({"model": model, "score_a": a, "score_b": b, "spearman": None if np.isnan(rho) else rho,
                         "n": both.height})
    return pl.DataFrame(rows, schema=SCORE_AGREEMENT_SCHEMA, orient="row")
