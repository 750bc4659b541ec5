"""How "no pretrained weights" is spelt: the one home of the random-init contract.

A model without weights has ``pretrained`` None in code, the tag ``random-init`` in its model key
(``ViT-B-32/random-init``) and accepts any of :data:`NO_WEIGHTS` where a user names its weights.
"""

from __future__ import annotations

RANDOM_INIT = "random-init"
NO_WEIGHTS = frozenset({"", "none", "None", "random", RANDOM_INIT})  # what a user may write for "no weights"


def parse_pretrained(value: object) -> str | None:
    """A user's pretrained value: None for random init, else the tag or checkpoint path as a string."""
    return None if value is None or str(value) in NO_WEIGHTS else str(value)


def is_random_init_tag(tag: str | None) -> bool:
    """True when ``tag`` (a pretrained value or the tag part of a model key) means no weights."""
    return tag is None or str(tag).lower() in {t.lower() for t in NO_WEIGHTS}
