"""A TopK sparse autoencoder (Gao et al. 2024): ``a = TopK(ReLU-free pre-acts) -> ReLU``, ``x_hat = a W_dec + b_dec``.

``W_enc`` [D, n_latents], ``b_enc`` [n_latents], ``W_dec`` [n_latents, D] (one unit-norm row per latent: its
decoder direction, the "column" of Gao's [D, n_latents] decoder), ``b_dec`` [D] (subtracted before encoding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class SAEConfig:
    n_latents: int = 32768
    k: int = 64


class TopKSAE(nn.Module):
    def __init__(self, d_in: int, config: SAEConfig, site: str):
        super().__init__()
        if not 1 <= config.k <= config.n_latents:
            raise ValueError(f"k = {config.k} must lie in 1..n_latents = {config.n_latents}")
        self.d_in, self.config, self.site = d_in, config, site
        self.W_enc = nn.Parameter(torch.zeros(d_in, config.n_latents))
        self.b_enc = nn.Parameter(torch.zeros(config.n_latents))
        self.W_dec = nn.Parameter(torch.zeros(config.n_latents, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @property
    def k(self) -> int:
        return self.config.k

    @property
    def n_latents(self) -> int:
        return self.config.n_latents

    @torch.no_grad()
    def init_(self, seed: int, mean_D: torch.Tensor | None = None) -> TopKSAE:
        """Random unit decoder rows drawn on the CPU (the same on every device), ``W_enc = W_dec^T``, ``b_dec`` = the data mean."""
        g = torch.Generator().manual_seed(int(seed))
        w = torch.randn(self.n_latents, self.d_in, generator=g)
        w = w / w.norm(dim=1, keepdim=True)
        self.W_dec.copy_(w)
        self.W_enc.copy_(w.T)
        self.b_enc.zero_()
        self.b_dec.copy_(mean_D if mean_D is not None else torch.zeros(self.d_in))
        return self

    def pre_acts(self, x_BD: torch.Tensor) -> torch.Tensor:
        """[B, n_latents]"""
        return (x_BD.float() - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x_BD: torch.Tensor) -> torch.Tensor:
        """Dense codes [B, n_latents]: the k largest pre-activations (ReLU'd), zeros elsewhere."""
        pre = self.pre_acts(x_BD)
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.W_dec + self.b_dec

    def forward(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(x_BD)
        return codes, self.decode(codes)

    @torch.no_grad()
    def normalise_decoder_(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def project_decoder_grad_(self) -> None:
        """Remove the gradient along each (unit) decoder row: the step then only turns the row (Gao et al.)."""
        if self.W_dec.grad is not None:
            g = self.W_dec.grad
            g.sub_((g * self.W_dec).sum(1, keepdim=True) * self.W_dec)


@torch.no_grad()
def quality(sae: TopKSAE, x_ND: torch.Tensor, batch: int = 4096) -> dict[str, float]:
    """Explained variance ``1 - SSE / SS_total``, L0 (mean active latents per sample), the share of latents that
    never fire on ``x_ND`` (dead), and the normalised MSE."""
    fired = torch.zeros(sae.n_latents, dtype=torch.bool, device=x_ND.device)
    sse, l0 = 0.0, 0.0
    mean_D = x_ND.float().mean(0)
    sst = float(((x_ND.float() - mean_D) ** 2).sum())
    for lo in range(0, x_ND.shape[0], batch):
        x = x_ND[lo : lo + batch].float()
        codes, recon = sae(x)
        sse += float(((recon - x) ** 2).sum())
        active = codes > 0
        l0 += float(active.sum())
        fired |= active.any(0)
    n = max(1, x_ND.shape[0])
    return {"explained_variance": 1.0 - sse / max(sst, 1e-30), "l0": l0 / n,
            "dead_share": float((~fired).float().mean()), "nmse": sse / max(sst, 1e-30)}
