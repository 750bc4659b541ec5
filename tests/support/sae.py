"""A small TopK SAE over a model's site, initialised from the site's activations on random images."""

from __future__ import annotations

import torch

from ccs_dist.sae.model import SAEConfig, TopKSAE
from ccs_dist.sae.sites import parse_site, site_activations


def make_sae(loaded, site, n=48, k=6, seed=0):
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    s = parse_site(site, loaded.num_layers)
    acts = site_activations(loaded, x, s)
    return TopKSAE(acts.shape[1], SAEConfig(n, k), s.name).init_(seed, acts.mean(0))
