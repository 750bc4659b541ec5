"""Training a TopK SAE on the CLS activations of an image set at one site; a content-addressed, resumable artifact.

Activations are streamed once through the decomposition's loader (:func:`ccs_dist.decomposition.loader.model_batches`)
into a buffer on the model's device (kept in the work folder, so a resumed run does not recompute them); the SAE
then trains on shuffled minibatches of it. The minibatch of step ``s`` is a function of (seed, s) alone and the
optimiser state is checkpointed, so training is deterministic given the seed and a resumed run gives the same
weights as an uninterrupted one. Loss: normalised MSE + ``aux_coef`` x AuxK (Gao et al. 2024: the ``aux_k``
dead latents with the largest pre-activations reconstruct the residual error).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load_bytes
from safetensors.torch import save as st_save_bytes

from ccs_dist.artifacts.store import ArtifactStore, atomic_save_npy, atomic_write_bytes, atomic_write_json, content_key, read_json
from ccs_dist.core.errors import UserError, check_at_least
from ccs_dist.data.images import ImageSet
from ccs_dist.decomposition.loader import model_batches
from ccs_dist.models.loading import LoadedModel
from ccs_dist.sae.io import load_sae, save_sae
from ccs_dist.sae.model import SAEConfig, TopKSAE, quality
from ccs_dist.sae.sites import parse_site, site_activations, site_width

log = logging.getLogger(__name__)

SAE_VERSION = 1  # bump when the training maths or the artifact layout changes
SAE_FILE = "sae.safetensors"


@dataclass(frozen=True)
class SAETrainConfig:
    site: str = "resid_post:-1"
    n_latents: int = 32768
    k: int = 64
    steps: int = 20_000
    batch_size: int = 4096
    lr: float = 2e-4
    aux_k: int = 512  # 0: no AuxK
    aux_coef: float = 1 / 32
    dead_steps: int = 1000  # a latent silent for this many steps counts as dead (for AuxK)
    seed: int = 0
    checkpoint_every: int = 1000
    image_batch_size: int = 64
    workers: int = 0

    def __post_init__(self):
        check_at_least(1, n_latents=self.n_latents, k=self.k, steps=self.steps, batch_size=self.batch_size,
                       dead_steps=self.dead_steps, checkpoint_every=self.checkpoint_every, image_batch_size=self.image_batch_size)
        check_at_least(0, aux_k=self.aux_k, workers=self.workers)
        if self.k > self.n_latents:
            raise UserError(f"k = {self.k} must not exceed n_latents = {self.n_latents}")


@dataclass(frozen=True)
class SAEArtifact:
    path: Path
    manifest: dict[str, Any]
    sae: TopKSAE

    @property
    def quality(self) -> dict[str, float]:
        return self.manifest["quality"]


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """The buffer rows of step ``step``: epoch ``e`` is a permutation seeded by (seed, e), cut into full batches."""
    bs = min(batch_size, n)
    per_epoch = n // bs
    epoch, j = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch))
    return perm[j * bs : (j + 1) * bs]


class Trainer:
    """Adam on a :class:`TopKSAE`; ``step(x_BD)`` is one update. ``state()`` / ``load_state()``: every tensor a
    checkpoint needs (weights, Adam moments, silent-step counters)."""

    def __init__(self, sae: TopKSAE, config: SAETrainConfig):
        self.sae, self.config = sae, config
        self.opt = torch.optim.Adam(sae.parameters(), lr=config.lr, eps=6.25e-10)
        self.silent = torch.zeros(sae.n_latents, dtype=torch.long, device=sae.W_dec.device)  # steps since last fired
        self.step_count = 0

    def loss(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sae, cfg = self.sae, self.config
        pre = sae.pre_acts(x_BD)
        top = pre.topk(sae.k, dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
        recon = sae.decode(codes)
        err = x_BD - recon
        denom = ((x_BD - x_BD.mean(0)) ** 2).sum(-1).mean().clamp_min(1e-12)
        mse = (err ** 2).sum(-1).mean() / denom
        with torch.no_grad():
            self.silent += 1
            self.silent[(codes > 0).any(0)] = 0
            dead = self.silent > cfg.dead_steps
        aux = torch.zeros((), device=x_BD.device)
        n_dead = int(dead.sum())
        if cfg.aux_k and n_dead:
            k_aux = min(cfg.aux_k, n_dead)
            aux_top = pre.masked_fill(~dead, float("-inf")).topk(k_aux, dim=-1)
            aux_codes = torch.zeros_like(pre).scatter(-1, aux_top.indices, aux_top.values.relu())
            e = err.detach()
            aux = ((aux_codes @ sae.W_dec - e) ** 2).sum(-1).mean() / ((e - e.mean(0)) ** 2).sum(-1).mean().clamp_min(1e-12)
            aux = torch.nan_to_num(aux, nan=0.0)
        return mse + cfg.aux_coef * aux, mse.detach(), aux.detach()

    def step(self, x_BD: torch.Tensor) -> tuple[float, float]:
        self.opt.zero_grad(set_to_none=True)
        total, mse, aux = self.loss(x_BD)
        total.backward()
        self.sae.project_decoder_grad_()
        self.opt.step()
        self.sae.normalise_decoder_()
        self.step_count += 1
        return float(mse), float(aux)

    def state(self) -> dict[str, torch.Tensor]:
        out = {f"param.{n}": p.detach() for n, p in self.sae.named_parameters()}
        names = [n for n, _ in self.sae.named_parameters()]
        for i, p in enumerate(self.sae.parameters()):
            for key, t in self.opt.state.get(p, {}).items():
                out[f"adam.{names[i]}.{key}"] = torch.as_tensor(t)
        out["silent"] = self.silent
        out["step"] = torch.tensor(self.step_count)
        return {k: v.detach().to("cpu").contiguous() for k, v in out.items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        dev = self.sae.W_dec.device
        with torch.no_grad():
            for n, p in self.sae.named_parameters():
                p.copy_(state[f"param.{n}"].to(dev))
        opt_state = {}
        for i, (n, _) in enumerate(self.sae.named_parameters()):
            keys = [k for k in state if k.startswith(f"adam.{n}.")]
            if keys:
                opt_state[i] = {k.rsplit(".", 1)[1]: state[k] if k.endswith(".step") else state[k].to(dev) for k in keys}
        sd = self.opt.state_dict()
        sd["state"] = opt_state
        self.opt.load_state_dict(sd)
        self.silent = state["silent"].to(dev)
        self.step_count = int(state["step"])


@torch.no_grad()
def collect_activations(loaded: LoadedModel, image_set: ImageSet, site: str, batch_size: int = 64, workers: int = 0) -> tuple[torch.Tensor, list[str]]:
    """The CLS activation at ``site`` of every readable image: ([N, D] float32 on the model's device, image ids)."""
    s = parse_site(site, loaded.num_layers)
    parts, ids = [], []
    shards = [(0, range(len(image_set)))]
    for mb in model_batches(image_set, loaded.preprocess, shards, batch_size, workers, loaded.device):
        if mb.images_B3WW is None:
            continue
        parts.append(site_activations(loaded, mb.images_B3WW, s))
        ids += [image_set.image_id(i) for i in mb.indices]
    if not parts:
        raise UserError(f"no readable image in {getattr(image_set, 'name', image_set)}: nothing to train an SAE on")
    return torch.cat(parts), ids


def sae_key(loaded: LoadedModel, image_set: ImageSet, config: SAETrainConfig) -> dict[str, Any]:
    site = parse_site(config.site, loaded.num_layers).name  # resid_post:-1 and resid_post:{L-1} share a key
    train = {k: v for k, v in asdict(config).items() if k not in ("site", "checkpoint_every", "workers", "image_batch_size")}
    return {"version": SAE_VERSION, "model": loaded.key, "weights": loaded.weights_hash, "images": image_set.fingerprint,
            "n_images": len(image_set), "site": site, "preprocess": repr(loaded.preprocess), "precision": loaded.precision,
            "train": train}


def _save_checkpoint(work: Path, trainer: Trainer) -> None:
    atomic_write_bytes(work / "checkpoint.safetensors", st_save_bytes(trainer.state()))
    atomic_write_json(work / "checkpoint.json", {"step": trainer.step_count})


def train_sae(
    loaded: LoadedModel,
    image_set: ImageSet,
    store: ArtifactStore,
    config: SAETrainConfig = SAETrainConfig(),
    *,
    stop_at_step: int | None = None,
) -> SAEArtifact | None:
    """Train (or reuse) the SAE of ``config`` on ``image_set``'s activations; resumes an interrupted run from its
    last checkpoint. ``stop_at_step``: checkpoint there and return None (a run cut short on purpose)."""
    site = parse_site(config.site, loaded.num_layers)
    key_parts = sae_key(loaded, image_set, config)
    key = content_key(key_parts)
    found = store.find("sae", key)
    if found is not None:
        sae, _ = load_sae(found / SAE_FILE, loaded.device)
        log.info("SAE %s of %s reused from %s", site.name, loaded.key, found)
        return SAEArtifact(found, read_json(found / "manifest.json"), sae)

    work = store.begin("sae", key)
    if (work / "activations.npy").is_file():
        x_ND = torch.from_numpy(np.load(work / "activations.npy")).to(loaded.device)
        ids = (work / "ids.txt").read_text(encoding="utf-8").splitlines()
    else:
        x_ND, ids = collect_activations(loaded, image_set, config.site, config.image_batch_size, config.workers)
        (work / "ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
        atomic_save_npy(work / "activations.npy", x_ND.cpu().numpy())
    n, d = x_ND.shape
    if d != site_width(loaded, site):
        raise RuntimeError(f"activations of width {d} at {site.name}, expected {site_width(loaded, site)}")

    sae = TopKSAE(d, SAEConfig(config.n_latents, config.k), site.name).init_(config.seed, x_ND.mean(0).cpu()).to(loaded.device)
    trainer = Trainer(sae, config)
    if (work / "checkpoint.safetensors").is_file():
        trainer.load_state(st_load_bytes((work / "checkpoint.safetensors").read_bytes()))
        log.info("SAE training resumed at step %d/%d", trainer.step_count, config.steps)
    end = config.steps if stop_at_step is None else min(stop_at_step, config.steps)
    mse = aux = float("nan")
    while trainer.step_count < end:
        idx = batch_indices(n, config.batch_size, config.seed, trainer.step_count).to(loaded.device)
        mse, aux = trainer.step(x_ND[idx])
        if trainer.step_count % config.checkpoint_every == 0 and trainer.step_count < config.steps:
            _save_checkpoint(work, trainer)
    if trainer.step_count < config.steps:
        _save_checkpoint(work, trainer)
        return None

    q = quality(sae, x_ND)
    log.info("SAE %s on %s: explained variance %.3f, L0 %.1f, dead %.1f%% (last nmse %.4f, aux %.4f)",
             site.name, loaded.key, q["explained_variance"], q["l0"], 100 * q["dead_share"], mse, aux)
    save_sae(sae, work / SAE_FILE, {"model": loaded.key, "weights": loaded.weights_hash, "images": image_set.fingerprint})
    for name in ("checkpoint.safetensors", "checkpoint.json", "activations.npy"):
        (work / name).unlink(missing_ok=True)
    manifest = {**key_parts, "model_metadata": loaded.metadata(), "image_set": getattr(image_set, "name", ""),
                "n_activations": n, "d_in": d, "quality": q}
    final = store.commit("sae", key, manifest)
    return SAEArtifact(final, manifest, sae)
