"""Named protocols: ``default`` (this project's choices) and ``paper`` (Madasu et al. and their code).

Each step where the two differ is an option of a stage config, exposed as one job-spec field. A spec's
``protocol`` picks the value of every such field the spec does not set itself; a field set in the spec
always wins, so a run can follow the paper except where it says otherwise. ``docs/protocol.md`` lists every
step of the pipeline with what the paper does, what ``protocol: paper`` does and what the default does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROTOCOLS = ("default", "paper")


@dataclass(frozen=True)
class Option:
    """One protocol option: the spec field (dotted path) and its value under each protocol."""

    field: str
    default: Any
    paper: Any
    why: str  # what the paper's code does, in one line


OPTIONS: tuple[Option, ...] = (
    Option("spans.rank_policy", "numerical", "numerical",
           "rank 80 on heads of dimension 64: the extra directions are rounding noise (ill-defined even in exact "
           "arithmetic); both protocols cap at the numerical rank, `reference` reproduces the code's noise"),
    Option("spans.precision", "fp32", "fp32", "head terms computed in fp32"),
    Option("llm.label_prompt", "label", "label_paper", "one-word label without punctuation, curated examples"),
    Option("evaluation.concept_heads", "any", "high", "a concept's pruned heads are its high-CCS heads"),
    Option("evaluation.random_layers", "scored", "reference", "ViT-B-32 OpenAI: random heads from all 12 layers"),
    Option("evaluation.video_pooling", "renormalised", "mean", "mean of unit frame embeddings, not renormalised"),
    Option("evaluation.class_names", "standard", "paper",
           "CIFAR-100 / Food-101 names joined by underscores; Oxford Pets named by a breed's first word (35 classes)"),
    Option("evaluation.bias_ranking", "global", "per_occupation",
           "SocialCounterfactuals: each occupation ranks its own counterfactual images, with their group shares"),
    Option("evaluation.bias_templates", "standard", "paper", "four occupation templates: 'A {c}', 'A photo of {c}', ..."),
)


def option_values(protocol: str) -> dict[str, Any]:
    """Dotted spec field -> value under ``protocol``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    return {o.field: getattr(o, protocol) for o in OPTIONS}


def apply_protocol(data: dict[str, Any]) -> dict[str, Any]:
    """The raw spec mapping with every protocol option it leaves unset filled in from its ``protocol``."""
    protocol = data.get("protocol", "default")
    if protocol not in PROTOCOLS:
        return data  # validation reports it
    out = dict(data)
    for dotted, value in option_values(protocol).items():
        section, key = dotted.split(".")
        part = out.get(section)
        part = dict(part) if isinstance(part, dict) else {} if part is None else part
        if isinstance(part, dict):
            part.setdefault(key, value)
            out[section] = part
    return out
