"""Direct-path ablation removes exactly a head's decomposition term; matched random sets keep the layers."""

from __future__ import annotations

import torch

from ccs_dist.benchmark.direct import direct_path_encoder, matched_random
from ccs_dist.core.heads import parse_head_name
from ccs_dist.decomposition.kernel import decompose
from ccs_dist.models.loading import load_model


def test_the_encoder_subtracts_the_heads_terms():
    loaded = load_model("ccs-toy", None, device="cpu")
    images = torch.randn(3, 3, loaded.image_size, loaded.image_size) if hasattr(loaded, "image_size") else None
    if images is None:
        size = loaded.preprocess.transforms[0].size
        size = size if isinstance(size, int) else size[0]
        images = torch.randn(3, 3, size, size)
    d = decompose(loaded, images, layers=list(range(loaded.num_layers)))
    out = direct_path_encoder(loaded.num_layers)(loaded, images, [[], ["L1.H2"], ["L0.H0", "L3.H3"]])
    torch.testing.assert_close(out[0], d.embedding.float())
    torch.testing.assert_close(out[1], d.embedding.float() - d.heads[:, 1, 2].float())
    torch.testing.assert_close(out[2], d.embedding.float() - d.heads[:, 0, 0].float() - d.heads[:, 3, 3].float())
    assert not torch.allclose(out[1], out[0])  # a head that writes something moves the embedding


def test_matched_random_sets_keep_size_and_layers():
    heads = ("L0.H1", "L0.H2", "L3.H0")
    sets = matched_random(heads, 4, 50, seed=0, salt=1)
    assert len(sets) == 50 and len(set(sets)) > 5
    for s in sets:
        assert sorted(parse_head_name(h)[0] for h in s) == [0, 0, 3] and len(set(s)) == 3
    assert sets == matched_random(heads, 4, 50, seed=0, salt=1)  # seeded
