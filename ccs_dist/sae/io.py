"""SAE weights as safetensors: ours (``W_enc`` [D, n], ``b_enc`` [n], ``W_dec`` [n, D], ``b_dec`` [D], metadata
``site`` and ``k``) and a user's, whose tensors may also be named as in OpenAI's sparse_autoencoder
(``encoder.weight`` [n, D], ``latent_bias``, ``decoder.weight`` [D, n], ``pre_bias``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load_bytes

from ccs_dist.artifacts.store import atomic_write_bytes, safetensors_bytes
from ccs_dist.core.errors import UserError
from ccs_dist.sae.model import SAEConfig, TopKSAE

# our name -> (aliases, whether the alias is stored transposed)
_ALIASES = {
    "W_enc": (("W_enc", False), ("encoder.weight", True)),
    "b_enc": (("b_enc", False), ("latent_bias", False), ("encoder.bias", False)),
    "W_dec": (("W_dec", False), ("decoder.weight", True)),
    "b_dec": (("b_dec", False), ("pre_bias", False), ("decoder.bias", False)),
}


def sae_bytes(sae: TopKSAE, metadata: dict[str, Any] | None = None) -> bytes:
    tensors = {name: getattr(sae, name).detach().to("cpu").float().contiguous() for name in _ALIASES}
    meta = {**{k: str(v) for k, v in (metadata or {}).items()}, "site": sae.site, "k": str(sae.k),
            "n_latents": str(sae.n_latents), "format": "ccs_dist.sae/1"}
    return safetensors_bytes(tensors, metadata=meta)


def save_sae(sae: TopKSAE, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    atomic_write_bytes(path, sae_bytes(sae, metadata))
    return path


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if not path.is_file():
        raise UserError(f"SAE file {path} not found: give a .safetensors file with encoder and decoder tensors")
    data = path.read_bytes()
    try:
        tensors = st_load_bytes(data)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise UserError(f"could not read {path} as safetensors ({str(e).splitlines()[0][:120]})") from e
    header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
    return tensors, dict(header.get("__metadata__") or {})


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> tuple[TopKSAE, dict[str, str]]:
    """-> (the SAE on ``device``, the file's metadata). One-line UserError naming what is missing or misshapen."""
    path = Path(path)
    tensors, meta = _read(path)
    got: dict[str, torch.Tensor] = {}
    for name, aliases in _ALIASES.items():
        hit = next(((a, t) for a, t in aliases if a in tensors), None)
        if hit is None:
            raise UserError(f"SAE file {path} has no {name} tensor (nor {', '.join(a for a, _ in aliases[1:])}): "
                            f"it holds {', '.join(sorted(tensors)) or 'no tensors'}")
        got[name] = tensors[hit[0]].T.contiguous() if hit[1] else tensors[hit[0]]
    missing = [m for m in ("site", "k") if not meta.get(m)]
    if missing:
        raise UserError(f"SAE file {path} names no {' and no '.join(missing)} in its metadata: "
                        "add site (resid_post:LAYER or embedding) and k (active latents) to the safetensors metadata")
    d, n = got["W_enc"].shape
    want = {"W_enc": (d, n), "b_enc": (n,), "W_dec": (n, d), "b_dec": (d,)}
    for name, shape in want.items():
        if tuple(got[name].shape) != shape:
            raise UserError(f"SAE file {path}: {name} has shape {tuple(got[name].shape)}, expected {shape} "
                            f"(from W_enc [{d}, {n}])")
    try:
        k = int(meta["k"])
    except ValueError as e:
        raise UserError(f"SAE file {path}: metadata k = {meta['k']!r} is not an integer") from e
    if not 1 <= k <= n:
        raise UserError(f"SAE file {path}: metadata k = {k} must lie in 1..{n}")
    sae = TopKSAE(d, SAEConfig(n_latents=n, k=k), site=meta["site"])
    with torch.no_grad():
        for name, t in got.items():
            getattr(sae, name).copy_(t.float())
    return sae.to(device), meta
