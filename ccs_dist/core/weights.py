"""How weights are named: the one home of "no pretrained weights" and of the model key.

A model without weights has ``pretrained`` None in code, the tag ``random-init`` in its model key
(``ViT-B-32/random-init``) and accepts any of :data:`NO_WEIGHTS` where a user names its weights.
The model key is the one name a model has in every table, manifest, stage folder and the report:
``ARCH/TAG`` for published weights, ``ARCH/file:NAME`` for a checkpoint file, ``ARCH/random-init`` without
weights, and the id itself for ``hf-hub:`` / ``local-dir:`` models (their id names config and weights).
"""

from __future__ import annotations

from pathlib import Path

RANDOM_INIT = "random-init"
NO_WEIGHTS = frozenset({"", "none", "None", "random", RANDOM_INIT})  # what a user may write for "no weights"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
SCHEMA_PREFIXES = ("hf-hub:", "local-dir:", "hf:")  # the arch names its own weights: the key is the arch


def parse_pretrained(value: object) -> str | None:
    """A user's pretrained value: None for random init, else the tag or checkpoint path as a string."""
    return None if value is None or str(value) in NO_WEIGHTS else str(value)


def has_no_weights(pretrained: object) -> bool:
    return parse_pretrained(pretrained) is None


def is_random_init_tag(tag: str | None) -> bool:
    """True when ``tag`` (a pretrained value or the tag part of a model key) means no weights, in any case."""
    return tag is None or str(tag).lower() in {t.lower() for t in NO_WEIGHTS}


def is_random_init_model(arch: str, pretrained: object) -> bool:
    """Whether ``(arch, pretrained)`` loads a network without weights (an ``hf:`` / ``hf-hub:`` id names its own)."""
    return not arch.startswith(SCHEMA_PREFIXES) and has_no_weights(pretrained)


def is_random_init_key(key: str) -> bool:
    """Whether a model key (or an older run's key) names a network without weights."""
    return "/" in key and key.rsplit("/", 1)[-1] != "" and is_random_init_tag(key.rsplit("/", 1)[-1])


def looks_like_checkpoint(pretrained: str) -> bool:
    """A pretrained value that names a file (known without touching the disk): a checkpoint suffix or a path."""
    return Path(pretrained).suffix in CHECKPOINT_SUFFIXES or "/" in pretrained


def model_key(arch: str, pretrained: str | None, *, is_file: bool | None = None) -> str:
    """The key :func:`ccs_dist.models.load_model` gives ``(arch, pretrained)``; ``is_file`` None: guessed by
    :func:`looks_like_checkpoint` (the loader passes what it found on disk)."""
    if arch.startswith(SCHEMA_PREFIXES):
        return arch
    if has_no_weights(pretrained):
        return f"{arch}/{RANDOM_INIT}"
    if is_file if is_file is not None else looks_like_checkpoint(str(pretrained)):
        return f"{arch}/file:{Path(str(pretrained)).name}"
    return f"{arch}/{pretrained}"
