"""Weights files are the same bytes for the same tensors: safetensors' metadata order is fixed here."""

from __future__ import annotations

import hashlib

import torch
from safetensors.torch import load, save

from ccs_dist.artifacts.store import safetensors_bytes
from ccs_dist.models.loading import BUNDLED

META = {"dtype": "float16", "arch": "ccs-plant"}


def test_the_same_tensors_give_the_same_bytes_every_call():
    tensors = {"a": torch.arange(6, dtype=torch.float16).reshape(2, 3), "b": torch.zeros(4)}
    assert len({safetensors_bytes(tensors, META) for _ in range(30)}) == 1
    assert len({save(tensors, metadata=META) for _ in range(30)}) == 2  # null: safetensors' own order varies
    out = load(safetensors_bytes(tensors, META))
    assert all(torch.equal(out[k], tensors[k]) for k in tensors)


def test_the_bundled_plant_weights_are_what_writing_their_tensors_gives():
    for b in (b for b in BUNDLED if b.arch == "ccs-plant"):
        data = safetensors_bytes(load(b.path.read_bytes()), META)
        assert hashlib.sha256(data).hexdigest() == b.sha256, b.tag
