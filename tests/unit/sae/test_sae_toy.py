"""Toy ground truth: an SAE on the trained toy model's last-block CLS residual has latents that pick out factor
values (held-out AUROC well above chance); permuted labels give chance."""

from __future__ import annotations

import numpy as np
import pytest

from ccs_dist.artifacts.store import ArtifactStore
from ccs_dist.data.images import resolve_image_set
from ccs_dist.models import load_model
from ccs_dist.sae.ground_truth import auroc_matrix, factor_aurocs, summary, toy_codes, toy_labels
from ccs_dist.sae.train import SAETrainConfig, train_sae


def test_auroc_matrix_by_hand():
    s = np.array([[0.1, 3.0], [0.4, 2.0], [0.35, 1.0], [0.8, 0.0]])
    y = np.array([0, 0, 1, 1], bool)
    np.testing.assert_allclose(auroc_matrix(s, y), [0.75, 0.0])
    assert np.isnan(auroc_matrix(s, np.zeros(4, bool))).all()


@pytest.mark.slow
def test_toy_latents_find_factor_values(tmp_path):
    images = resolve_image_set("toy:256", tmp_path)
    toy = load_model("ccs-toy", "planted_v2", device="cpu")
    cfg = SAETrainConfig(site="resid_post:-1", n_latents=128, k=8, steps=600, batch_size=128, lr=1e-3, aux_k=32, dead_steps=100)
    art = train_sae(toy, images, ArtifactStore(tmp_path / "cache"), cfg)
    assert art.quality["explained_variance"] > 0.9 and art.quality["l0"] == pytest.approx(8, abs=0.5)
    codes, labels = toy_codes(toy, art.sae, images), toy_labels(images)
    real = summary(factor_aurocs(codes, labels))
    null = summary(factor_aurocs(codes, labels, permute=True))
    assert abs(null["held_out_auroc_mean"] - 0.5) < 0.06, null
    assert real["held_out_auroc_mean"] > null["held_out_auroc_mean"] + 0.12, (real, null)
