"""Head sets for soft-pruning: high / low / moderate / random / equal-count / concept families / explicit lists.

A :class:`HeadSet` names a condition of the ``evaluation`` table and the heads it prunes. Sets are built
from the ``ccs`` table (columns model, layer, head, label, ccs, category) of one model:

* ``high`` / ``moderate`` / ``low``: the heads of that category (the paper: CCS = 5, CCS = 3, CCS <= 1);
* ``random`` (one set per seed): as many heads as ``high``, drawn from the scored layers' heads minus the
  high heads;
* ``equal:high`` / ``equal:low``: ``min(|high|, |low|)`` heads from each (lowest CCS first for ``low``;
  ties broken by a seeded draw);
* ``concept:NAME``: heads whose label belongs to a concept family (label -> family through a
  configurable synonym map);
* explicit lists: ``NAME=L11.H5,L10.H8`` (or just ``L11.H5,L10.H8``, named by the list itself).

The naive reference for masked evaluation lives here too (:func:`zeroed_heads`): zero the out-projection
input columns of the pruned heads, which is what the masked engine must equal.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ccs_dist.artifacts.schemas import trunk_heads
from ccs_dist.ccs.scores import PAPER_THRESHOLDS
from ccs_dist.core.errors import UserError
from ccs_dist.core.heads import head_name
from ccs_dist.core.heads import parse_heads
from ccs_dist.data.metadata import concept_families

log = logging.getLogger(__name__)

CATEGORY_CONDITIONS = ("high", "moderate", "low")
ALL_CONDITIONS = ("original", "high", "low", "moderate", "random", "equal", "concept")
RANDOM_LAYERS = ("scored", "all", "reference")


@dataclass(frozen=True)
class HeadSet:
    """One evaluation condition: the heads it prunes (``L{layer}.H{head}``, sorted) and its seed (random only)."""

    condition: str
    heads: tuple[str, ...]
    seed: int | None = None

    @property
    def n_pruned(self) -> int:
        return len(self.heads)


# --- explicit lists -----------------------------------------------------------------------------------


def parse_explicit(spec: str) -> tuple[str, str]:
    """``"locs=L10.H8,L11.H9"`` -> ``("locs", "L10.H8,L11.H9")``; without a name the list names itself."""
    spec = spec.strip()
    if "=" in spec:
        name, heads = (s.strip() for s in spec.split("=", 1))
        if not name:
            raise UserError(f"explicit head list {spec!r} has an empty name; write NAME=L11.H5,L10.H8")
    else:
        heads = spec
        name = ",".join(h.strip() for h in spec.split(",") if h.strip())
    if name in ALL_CONDITIONS or name.startswith(("random", "equal:", "concept:")):
        raise UserError(f"explicit head list name {name!r} clashes with a built-in condition; pick another name")
    if not heads:
        raise UserError(f"explicit head list {spec!r} names no heads")
    return name, heads


def parse_explicit_lists(text: str) -> dict[str, str]:
    """``"locs=L10.H8,L11.H9;L11.H5"`` (lists separated by ';') -> {name: heads} (see :func:`parse_explicit`)."""
    return dict(parse_explicit(item) for item in str(text).split(";") if item.strip())


@dataclass(frozen=True)
class HeadSetConfig:
    """Which head sets to build: these fields are also the ``evaluation`` spec section's and the ``evaluate``
    command's (``ccs_dist.evaluate.config.EvalConfig`` extends this class); ``metadata``: help and the edge's checks."""

    conditions: tuple[str, ...] = field(default=ALL_CONDITIONS, metadata={
        "help": "head sets to build: original, high, low, moderate, random, equal, concept (all but original need a ccs table)"})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={
        "help": "seeds of the random sets (>= 3 for mean and std); the first also breaks ties in equal-count sets"})
    concepts: tuple[str, ...] | None = field(default=None, metadata={
        "help": "concept families to prune (none: every family some head label matches)"})
    concept_map: str | None = field(default=None, metadata={
        "help": "JSON file {family: [synonym, ...]} replacing the default label -> family map"})
    heads: dict[str, str] = field(default_factory=dict, hash=False, metadata={
        "parse": parse_explicit_lists,
        "help": "explicit head lists, ';'-separated, each NAME=L11.H5,L10.H8 or just L11.H5,L10.H8 (a spec: {NAME: heads})"})
    min_stability: float | None = field(default=None, metadata={"ge": 0, "le": 1, "help": (
        "heads whose span stability (ccs table) is below this, or unknown, join no CCS-based head set "
        "(random sets are unaffected); none: every head")})
    concept_heads: Literal["any", "high"] = field(default="any", metadata={
        "help": "any: every head whose label is in the family; high: only the family's high-CCS heads (the paper)"})
    random_layers: Literal["scored", "all", "reference"] = field(default="scored", metadata={"help": (
        "where random sets draw from: the scored layers, every layer, or as the paper's code (every layer for "
        "ViT-B-32 OpenAI, scored otherwise)")})

    def __post_init__(self) -> None:
        if self.min_stability is not None and not 0.0 <= self.min_stability <= 1.0:
            raise UserError(f"min_stability={self.min_stability} is out of range: give a value between 0 and 1")
        if self.random_layers not in RANDOM_LAYERS:
            raise UserError(f"unknown random_layers {self.random_layers!r}: use one of {', '.join(RANDOM_LAYERS)}")
        if self.concept_heads not in ("any", "high"):
            raise UserError(f"unknown concept_heads {self.concept_heads!r}: use any or high")
        unknown = [c for c in self.conditions if c not in ALL_CONDITIONS]
        if unknown:
            raise UserError(f"unknown condition(s) {', '.join(unknown)}; choose from {', '.join(ALL_CONDITIONS)}")
        if "random" in self.conditions and not self.seeds:
            raise UserError("random head sets need at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds repeat: {list(self.seeds)}")

    def concept_families(self) -> dict[str, tuple[str, ...]]:
        """Family -> synonyms: ``concept_map``'s file, or the package default (a UserError for a bad file)."""
        return load_concept_map(self.concept_map)


def _names(pairs: Sequence[tuple[int, int]]) -> tuple[str, ...]:
    return tuple(head_name(layer, head) for layer, head in sorted(pairs))


# --- concept families ---------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(_singular(w) for w in _WORD.findall(text.lower()))


def load_concept_map(path: str | Path | None = None) -> dict[str, tuple[str, ...]]:
    """Family -> synonyms from a JSON file ``{"location": ["place", "country", ...], ...}`` or the default."""
    if path is None:

        return concept_families()
    import json

    p = Path(path)
    if not p.is_file():
        raise UserError(f"concept map {p} not found; give a JSON file {{family: [synonym, ...]}}")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"concept map {p} is not valid JSON: {e}") from None
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for k, v in raw.items() if not k.startswith("_")
    ):
        raise UserError(f"concept map {p} must be a JSON object {{family: [synonym, ...]}}")
    return {k: tuple(v) for k, v in raw.items() if not k.startswith("_")}


def label_families(label: str, concept_map: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    """The families whose synonyms (or the family name itself) occur in ``label`` as whole words/phrases."""
    words = _tokens(label)
    found = []
    for family, synonyms in concept_map.items():
        for phrase in (family, *synonyms):
            p = _tokens(phrase)
            if p and any(words[i : i + len(p)] == p for i in range(len(words) - len(p) + 1)):
                found.append(family)
                break
    return tuple(found)


# --- from the ccs table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ScoredHead:
    layer: int
    head: int
    label: str
    ccs: int
    category: str
    stability: float | None = None


def _stable_only(scored: list[_ScoredHead], min_stability: float | None, model_key: str, has_column: bool) -> list[_ScoredHead]:
    if min_stability is None:
        return scored
    if not has_column:
        raise UserError("min_stability needs the ccs table's stability column: re-run the spans stage with stability "
                        "resamples > 0 (and score again), or drop min_stability")
    kept = [h for h in scored if h.stability is not None and h.stability >= min_stability]
    if len(kept) < len(scored):
        log.info("%s: %d of %d heads below span stability %.2f (or without one) join no CCS-based head set",
                 model_key, len(scored) - len(kept), len(scored), min_stability)
    return kept


def _model_rows(ccs_table, model_key: str, num_layers: int, num_heads: int) -> list[_ScoredHead]:
    import polars as pl


    required = {"model", "layer", "head", "label", "ccs"}
    missing = required - set(ccs_table.columns)
    if missing:
        raise UserError(f"ccs table lacks column(s) {', '.join(sorted(missing))}; expected {', '.join(sorted(required | {'category'}))}")
    rows = ccs_table.filter(pl.col("model") == model_key)
    if rows.height == 0:
        models = sorted(ccs_table.get_column("model").unique().to_list())
        raise UserError(f"ccs table has no rows for model {model_key}; it has {', '.join(map(str, models)) or 'none'}")
    rows = trunk_heads(rows)  # an attention pooling's units are scored, not pruned
    has_category = "category" in rows.columns
    out = []
    for r in rows.iter_rows(named=True):
        parse_heads([(r["layer"], r["head"])], num_layers, num_heads)  # range check, UserError if out of range
        if r["ccs"] is None:
            continue  # unscored head (e.g. every judgment failed): in no category
        score = int(r["ccs"])
        if has_category and r["category"] is not None:
            category = str(r["category"])
        else:
            category = PAPER_THRESHOLDS.category(score)
        stability = r.get("stability")
        out.append(_ScoredHead(int(r["layer"]), int(r["head"]), str(r["label"] or ""), score, category,
                               None if stability is None else float(stability)))
    pairs = [(h.layer, h.head) for h in out]
    if len(set(pairs)) != len(pairs):
        raise UserError(f"ccs table has duplicate (layer, head) rows for model {model_key}")
    return out


def _random_layers(policy: str, model_key: str, scored: list[int], num_layers: int) -> list[int]:
    """Layers random head sets draw from (see ``HeadSetConfig.random_layers``)."""
    reference_all = model_key.startswith("ViT-B-32") and model_key.endswith("/openai")
    return list(range(num_layers)) if policy == "all" or (policy == "reference" and reference_all) else scored


def _draw(pairs: Sequence[tuple[int, int]], n: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    pool = sorted(pairs)
    idx = rng.choice(len(pool), size=n, replace=False)
    return sorted(pool[i] for i in idx)


def _equal_pick(heads: Sequence[_ScoredHead], n: int, seed: int, lowest_first: bool) -> list[tuple[int, int]]:
    """n heads: by CCS (lowest or highest first), ties broken by a seeded random order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(heads))
    ranked = sorted(range(len(heads)), key=lambda i: ((heads[i].ccs if lowest_first else -heads[i].ccs), order[i]))
    return sorted((heads[i].layer, heads[i].head) for i in ranked[:n])


def build_head_sets(
    ccs_table,
    model_key: str,
    num_layers: int,
    num_heads: int,
    config: HeadSetConfig = HeadSetConfig(),
) -> list[HeadSet]:
    """All head sets for one model, in a stable order (original first).

    ``ccs_table`` is a polars DataFrame of the ``ccs`` table (or ``None`` when only ``original`` and explicit
    lists are asked for).
    """
    sets: list[HeadSet] = []
    if "original" in config.conditions:
        sets.append(HeadSet("original", ()))
    needs_ccs = [c for c in config.conditions if c != "original"]
    if needs_ccs:
        if ccs_table is None:
            raise UserError(f"condition(s) {', '.join(needs_ccs)} need a ccs table (--ccs FILE); or ask only for original and explicit lists")
        all_scored = _model_rows(ccs_table, model_key, num_layers, num_heads)
        scored = _stable_only(all_scored, config.min_stability, model_key, "stability" in ccs_table.columns)
        by_cat = {c: [h for h in scored if h.category == c] for c in CATEGORY_CONDITIONS}
        for cat in CATEGORY_CONDITIONS:
            if cat in config.conditions:
                if not by_cat[cat]:
                    log.warning("%s: no %s-CCS heads; the %s condition prunes nothing", model_key, cat, cat)
                sets.append(HeadSet(cat, _names([(h.layer, h.head) for h in by_cat[cat]])))
        high = {(h.layer, h.head) for h in by_cat["high"]}
        if "random" in config.conditions:
            layers = _random_layers(config.random_layers, model_key, sorted({h.layer for h in all_scored}), num_layers)
            pool = [(l, h) for l in layers for h in range(num_heads) if (l, h) not in high]
            if len(pool) < len(high):
                # more than half the heads are high: a random set of |high| heads cannot avoid them all, so it is
                # drawn from every head of those layers (said in the log; the high/random contrast is then weaker)
                log.warning("%s: %d high heads but only %d other heads in the scored layers: random sets are drawn "
                            "from all %d heads of those layers, high ones included", model_key, len(high), len(pool),
                            len(layers) * num_heads)
                pool = [(l, h) for l in layers for h in range(num_heads)]
            for seed in config.seeds:
                sets.append(HeadSet("random", _names(_draw(pool, len(high), seed)), seed=seed))
        if "equal" in config.conditions:
            n = min(len(by_cat["high"]), len(by_cat["low"]))
            if n == 0:
                log.warning("%s: equal-count sets are empty (|high|=%d, |low|=%d)", model_key, len(by_cat["high"]), len(by_cat["low"]))
            seed = config.seeds[0] if config.seeds else 0
            sets.append(HeadSet("equal:high", _names(_equal_pick(by_cat["high"], n, seed, lowest_first=False))))
            sets.append(HeadSet("equal:low", _names(_equal_pick(by_cat["low"], n, seed, lowest_first=True))))
        if "concept" in config.conditions:
            cmap = config.concept_families()
            members: dict[str, list[tuple[int, int]]] = {f: [] for f in cmap}
            for h in scored:
                if config.concept_heads == "high" and h.category != "high":
                    continue  # the paper prunes a concept's high-CCS heads only
                for fam in label_families(h.label, cmap):
                    members[fam].append((h.layer, h.head))
            wanted = config.concepts if config.concepts is not None else tuple(f for f in cmap if members[f])
            for fam in wanted:
                if fam not in cmap:
                    raise UserError(f"unknown concept family {fam!r}; the concept map has {', '.join(cmap)}")
                if not members[fam]:
                    log.warning("%s: no head label matches concept family %s; concept:%s prunes nothing", model_key, fam, fam)
                sets.append(HeadSet(f"concept:{fam}", _names(members[fam])))
    for name, heads in config.heads.items():
        sets.append(HeadSet(name, _names(parse_heads(heads, num_layers, num_heads))))
    conds = [(s.condition, s.seed) for s in sets]
    if len(set(conds)) != len(conds):
        raise UserError(f"two head sets share a condition name: {[c for c, _ in conds]}")
    return sets


# --- naive reference: zeroed out-projection columns ---------------------------------------------------


@contextlib.contextmanager
def zeroed_heads(model, heads: Sequence[str]) -> Iterator[None]:
    """Zero the out-projection input columns of ``heads`` in an open_clip CLIP image tower, restore on exit.

    The naive way to soft-prune: head ``h`` of layer ``l`` writes through columns ``h*K:(h+1)*K`` of that
    layer's ``out_proj.weight`` [D, H*K]; zeroing them removes its output at every token, bias kept.
    """
    blocks = model.visual.transformer.resblocks
    saved = []
    try:
        for layer, head in parse_heads(list(heads), len(blocks), blocks[0].attn.num_heads):
            w = blocks[layer].attn.out_proj.weight
            k = w.shape[1] // blocks[layer].attn.num_heads
            cols = slice(head * k, (head + 1) * k)
            saved.append((w, cols, w.data[:, cols].clone()))
            w.data[:, cols] = 0
        yield
    finally:
        for w, cols, old in reversed(saved):
            w.data[:, cols] = old


def encode_image_head_sets_naive(loaded, images_B3WW, head_sets: Sequence[Sequence[str]]):
    """Reference: one full forward per head set with zeroed columns -> [S, B, E] (slow; for tests and bench)."""
    import torch

    outs = []
    with torch.no_grad():
        for heads in head_sets:
            with zeroed_heads(loaded.model, heads):
                outs.append(loaded.model.encode_image(images_B3WW))
    return torch.stack(outs)
