"""Model keys: the one name a model has in every table, manifest, stage folder and the report.

``ARCH/TAG`` for published weights, ``ARCH/file:NAME`` for a checkpoint file, ``ARCH/random-init`` without
weights, and the id itself for ``hf-hub:`` / ``local-dir:`` models (their id names config and weights).
"""

from __future__ import annotations

from pathlib import Path

RANDOM_INIT = "random-init"
NO_WEIGHTS = frozenset({"", "none", "None", "random", RANDOM_INIT})  # and None: spellings of "no weights"
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
SCHEMA_PREFIXES = ("hf-hub:", "local-dir:")


def has_no_weights(pretrained: str | None) -> bool:
    return pretrained is None or str(pretrained) in NO_WEIGHTS


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


def is_random_init_key(key: str) -> bool:
    """Whether a model key (or an older run's key) names a network without weights."""
    tag = key.rsplit("/", 1)[-1].lower() if "/" in key else ""
    return tag in (RANDOM_INIT, "none", "random")
