"""Which (arch, pretrained) pairs load a network without weights: the flag every table and the report carry."""

from __future__ import annotations

import pytest

from ccs_dist.core.weights import is_random_init_key, is_random_init_model, model_key


@pytest.mark.parametrize("arch, pretrained, random", [
    ("ViT-B-32", None, True), ("ViT-B-32", "none", True), ("ViT-B-32", "random-init", True),
    ("ViT-B-32", "openai", False), ("ViT-B-32", "/w/ckpt.pt", False),
    ("hf:/models/my-finetune", None, False),  # the folder holds its weights
    ("hf-hub:timm/ViT-B-16-SigLIP2", None, False),
])
def test_random_init_is_told_by_arch_and_pretrained(arch, pretrained, random):
    assert is_random_init_model(arch, pretrained) is random
    assert is_random_init_key(model_key(arch, pretrained)) is random  # an older run's key says the same
