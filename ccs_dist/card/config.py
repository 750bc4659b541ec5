"""The card stage's options: the job spec section ``card`` (flags ``--card-...`` where a command takes it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ccs_dist.core.errors import UserError


@dataclass(frozen=True)
class ReferenceConfig:
    """The reference encoder (the offline judge): any open_clip model, never the audited one silently."""

    arch: str | None = field(default=None, metadata={"help": "open_clip architecture of the reference encoder (required when the card is enabled)"})
    pretrained: str | None = field(default=None, metadata={"help": "its weights tag, file or none (random init)"})
    allow_self: bool = field(default=False, metadata={"help": "allow the audited model as its own reference (flagged in every output)"})


@dataclass(frozen=True)
class CardConfig:
    """Image-grounded scores of every labelled head (:mod:`ccs_dist.card.run` defines each)."""

    enabled: bool = field(default=False, metadata={"spec_only": True, "help": "compute the card stage"})
    reference: ReferenceConfig = field(default_factory=ReferenceConfig, metadata={"help": "the reference encoder"})
    top_images: int = field(default=8, metadata={"ge": 2, "help": "top-activating held-out images per head and direction"})
    random_images: int = field(default=16, metadata={"ge": 2, "help": "random held-out images per head (detection negatives)"})
    null_draws: int = field(default=32, metadata={"ge": 1, "help": "random image sets (or permutations) behind each score's null mean"})
    heldout_share: float = field(default=0.5, metadata={"gt": 0.0, "le": 0.9, "help": "share of the probe images held out (the rest fit the principal directions)"})
    prompt: str = field(default="a photo of {label}", metadata={"help": "reference prompt of a label ({label} is replaced)"})
    null_prompt: str = field(default="a photo", metadata={"help": "the null prompt the label must beat"})
    batch_size: int = field(default=64, metadata={"ge": 1, "help": "images per reference-encoder batch"})
    resamples: int = field(default=0, metadata={"ge": 0, "help": (
        "image half-samples behind the CCS intervals: TextSpan, labels and verdicts again on each (at most "
        "resamples x heads x (1 + m x judges) scoring requests, cached; 0: no intervals)")})
    tasks: tuple[str, ...] = field(default=(), metadata={"help": (
        "classification tasks of the intervention specificity (each labelled head pruned alone, whole and direct "
        "path; empty: no specificity rows)")})
    task_limit: int | None = field(default=256, metadata={"ge": 1, "help": "images per specificity task (None: all)"})
    seed: int = field(default=0, metadata={"help": "seed of the held-out split, the random sets and the permutations"})

    def __post_init__(self):
        if "{label}" not in self.prompt:
            raise UserError(f"card.prompt must contain {{label}}, got {self.prompt!r}")
