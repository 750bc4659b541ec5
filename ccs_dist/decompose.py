"""Direct contribution of every attention head to the image embedding (Gandelsman et al.).

The CLS residual before ``ln_post`` is a sum of 2L+1 writes: the ``ln_pre`` output, L attention layers and
L MLPs. With the per-image mean ``mu`` and std ``sigma`` of that residual fixed, ``ln_post`` is affine, so a
write ``c`` with share ``s`` of the mean and bias maps to the joint space as
``((c - mu * s) * gamma / sigma + beta * s) @ proj``. Shares follow the reference code: every residual write
has ``1/(2L+1)``, an attention layer's share is split equally over its H heads, and so is its out-projection
bias (a head's term is its CLS write plus ``bias/H``). All terms sum to ``encode_image``.

Axis letters: :mod:`ccs_dist.axes` (one legend for the package).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ccs_dist.errors import UserError
from ccs_dist.data.images import ImageSet
from ccs_dist.heads import head_name
from ccs_dist.loader import LoaderStats
from ccs_dist.models import forward
from ccs_dist.heads import resolve_layers
from ccs_dist.models.loading import LoadedModel
from ccs_dist.store import ArtifactStore, content_key, read_json

log = logging.getLogger(__name__)

DECOMPOSE_VERSION = 1  # bump when the maths or the on-disk layout changes


@dataclass(frozen=True)
class Decomposition:
    """One batch decomposed. ``heads.sum((1, 2)) + rest == embedding`` up to float rounding.

    ``heads``: [B, L, H, E] direct contribution of each head of ``layers`` (not divided by the norm).
    ``rest``: [B, E] every other term (embeddings, other layers, MLPs).
    ``embedding``: [B, E] the ``encode_image`` output, not normalised.
    ``spatial``: for requested (layer, head) pairs, [B, P, E] contributions per source position (summing
    over P to that head's term), for heat-maps.
    """

    heads: torch.Tensor
    layers: tuple[int, ...]
    rest: torch.Tensor
    embedding: torch.Tensor
    spatial: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)


class _LnPostAffine:
    """``ln_post`` linearised at the per-image mean/std of the CLS residual, followed by ``proj``."""

    def __init__(self, visual: torch.nn.Module, resid_BD: torch.Tensor):
        ln = visual.ln_post
        r = resid_BD.float()
        self.mu_B1 = r.mean(-1, keepdim=True)
        self.sigma_B1 = (r.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()
        d = r.shape[-1]
        self.gamma_D = ln.weight.float() if ln.weight is not None else torch.ones(d, device=r.device)
        self.beta_D = ln.bias.float() if ln.bias is not None else torch.zeros(d, device=r.device)
        self.proj_DE = visual.proj.float()

    def __call__(self, writes: torch.Tensor, share: float) -> torch.Tensor:
        """Map ``writes`` [B, ..., D] with share ``share`` to the joint space [B, ..., E]."""
        extra = writes.dim() - 2
        mu = self.mu_B1.view(-1, *([1] * extra), 1)
        sigma = self.sigma_B1.view(-1, *([1] * extra), 1)
        return ((writes.float() - mu * share) * self.gamma_D / sigma + self.beta_D * share) @ self.proj_DE


def _check_supported(loaded: LoadedModel) -> None:
    visual = loaded.visual
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        raise UserError(f"{loaded.key}: decomposition needs class-token pooling (pool_type=tok, no attention pooling)")
    if visual.proj is None:
        raise UserError(f"{loaded.key}: the image tower has no output projection to decompose into")


class _Recorder:
    """Hooks that record the CLS residual writes of one forward pass; every hook must fire.

    Each write is keyed by the module path of the module it is read at (outputs of ``ln_pre``, ``ls_1`` and
    ``ls_2``; the input of ``ln_post``), as TransformerLens keys hooks by name.
    """

    def __init__(self, loaded: LoadedModel, layers: Sequence[int], spatial: dict[int, tuple[int, ...]]):
        self.loaded, self.layers, self.spatial = loaded, tuple(layers), spatial
        self.writes: dict[str, torch.Tensor] = {}
        self.captures: dict = {}  # layer -> HeadCapture
        self._handles: list = []
        self._controls = contextlib.ExitStack()

    def _store(self, name: str):
        def hook(_module, _inputs, output):
            self.writes[name] = output[:, 0].detach().clone()
        return hook

    def __enter__(self) -> _Recorder:
        visual = self.loaded.visual
        if not visual.transformer.batch_first:
            raise UserError(f"{self.loaded.key}: sequence-first image transformers are not supported")
        self._handles.append(visual.ln_pre.register_forward_hook(self._store("visual.ln_pre")))
        for layer, block in enumerate(visual.transformer.resblocks):
            self._handles.append(block.ls_1.register_forward_hook(self._store(f"visual.transformer.resblocks.{layer}.ls_1")))
            self._handles.append(block.ls_2.register_forward_hook(self._store(f"visual.transformer.resblocks.{layer}.ls_2")))

        def pre_ln_post(_module, inputs):
            x = inputs[0]
            self.writes["visual.ln_post"] = (x[:, 0] if x.dim() == 3 else x).detach().clone()
        self._handles.append(visual.ln_post.register_forward_pre_hook(pre_ln_post))
        for layer in self.layers:
            self.captures[layer] = self._controls.enter_context(
                self.loaded.heads[layer].controlled(capture_cls=True, capture_spatial=self.spatial.get(layer, ())))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._controls.close()
        if exc[0] is None:
            expected = 2 + 2 * self.loaded.num_layers
            if len(self.writes) != expected:
                raise RuntimeError(f"decomposition hooks fired {len(self.writes)} of {expected} times")


def _layer_scale(block: torch.nn.Module) -> torch.Tensor | None:
    gamma = getattr(block.ls_1, "gamma", None)
    return None if gamma is None else gamma.float()


def ln_post_affine(visual: torch.nn.Module, resid_BD: torch.Tensor) -> _LnPostAffine:
    """``ln_post`` linearised at the CLS residual ``resid_BD`` (its input), then ``proj``: maps writes to the joint space."""
    return _LnPostAffine(visual, resid_BD)


def head_term(visual: torch.nn.Module, layer: int, cls_BHD: torch.Tensor, to_joint: _LnPostAffine) -> torch.Tensor:
    """Direct contribution [B, H, E] of each head of ``layer`` from its CLS write (``HeadCapture.cls_BHD``).

    A head's term is its CLS write plus ``bias / H``, times the layer scale, mapped with share ``1 / ((2L+1) H)``.
    Plain torch on its inputs: differentiable when they carry gradients (``ccs_dist.toy.planted`` trains on it).
    """
    blocks = visual.transformer.resblocks
    module, n_terms = blocks[layer].attn, 2 * len(blocks) + 1
    H = module.num_heads
    bias = module.out_proj.bias
    c_BHD = cls_BHD.float() + (bias.float() / H if bias is not None else 0.0)
    gamma = _layer_scale(blocks[layer])
    if gamma is not None:
        c_BHD = c_BHD * gamma
    return to_joint(c_BHD, 1.0 / (n_terms * H))


@torch.no_grad()
def decompose(
    loaded: LoadedModel,
    images: torch.Tensor,
    layers: int | Sequence[int] = 4,
    spatial_heads: Sequence[tuple[int, int]] = (),
) -> Decomposition:
    """Decompose a batch of preprocessed images ``[B, 3, h, w]`` (see :class:`Decomposition`).

    ``layers``: an int means the last n layers, a sequence names 0-based layers.
    ``spatial_heads``: (layer, head) pairs whose per-position contributions to return.
    """
    _check_supported(loaded)
    chosen = resolve_layers(layers, loaded.num_layers)
    spatial: dict[int, tuple[int, ...]] = {}
    for layer, head in spatial_heads:
        if layer not in chosen or not 0 <= head < loaded.num_heads:
            raise UserError(f"spatial head {head_name(layer, head)} is not among the decomposed layers {list(chosen)}")
        spatial[layer] = tuple(sorted(set(spatial.get(layer, ()) + (head,))))
    visual = loaded.visual
    images = images.to(loaded.device)
    with _Recorder(loaded, chosen, spatial) as rec:
        embedding_BE = forward.encode_image(loaded, images)  # CLS-only last block: same embedding, less work

    L, H = loaded.num_layers, loaded.num_heads
    n_terms = 2 * L + 1
    to_joint = ln_post_affine(visual, rec.writes["visual.ln_post"])

    # Everything that is not a head of a chosen layer, summed in the residual space first (the map is affine).
    rest_BD = rec.writes["visual.ln_pre"].float().clone()
    n_rest_terms = 1
    for layer in range(L):
        rest_BD += rec.writes[f"visual.transformer.resblocks.{layer}.ls_2"].float()
        n_rest_terms += 1
        if layer not in chosen:
            rest_BD += rec.writes[f"visual.transformer.resblocks.{layer}.ls_1"].float()
            n_rest_terms += 1
    rest_BE = to_joint(rest_BD, n_rest_terms / n_terms)

    head_terms = []
    spatial_out: dict[tuple[int, int], torch.Tensor] = {}
    for layer in chosen:
        module = loaded.heads[layer]
        block = visual.transformer.resblocks[layer]
        bias_D = module.out_proj.bias.float() if module.out_proj.bias is not None else torch.zeros(loaded.width, device=images.device)
        gamma = _layer_scale(block)
        capture = rec.captures[layer]
        head_terms.append(head_term(visual, layer, capture.cls_BHD, to_joint))
        if capture.spatial_BAPD is not None:
            P = capture.spatial_BAPD.shape[2]
            s_BAPD = capture.spatial_BAPD.float() + bias_D / (H * P)
            if gamma is not None:
                s_BAPD = s_BAPD * gamma
            s_BAPE = to_joint(s_BAPD, 1.0 / (n_terms * H * P))
            for i, head in enumerate(spatial[layer]):
                spatial_out[(layer, head)] = s_BAPE[:, i]
    heads_BLHE = torch.stack(head_terms, dim=1)
    return Decomposition(heads=heads_BLHE, layers=chosen, rest=rest_BE, embedding=embedding_BE, spatial=spatial_out)


# --------------------------------------------------------------------------------------------------------
# Streaming over an image set into sharded on-disk arrays


@dataclass(frozen=True)
class DecomposeConfig:
    layers: int | tuple[int, ...] = 4
    batch_size: int = 64
    num_workers: int | None = None  # None: min(4, cpus - 1)
    shard_size: int = 2048  # images per shard file
    on_bad_image: Literal["skip", "error"] = "skip"
    progress: bool = True
    # What the artifact keeps of the heads: fp32 terms, fp16 terms, or only TextSpan's per-head moments
    # (count, sum, Gram per stability bucket; see ccs_dist.moments). Spans from "moments" equal "heads".
    keep: Literal["heads", "heads_fp16", "moments"] = field(default="heads", kw_only=True)
    moment_buckets: int = field(default=10, kw_only=True)  # stability buckets kept with "moments" (0: none)
    moment_seed: int = field(default=0, kw_only=True)  # their deal's seed (the spans stage's stability seed)
    # Where JPEGs are decoded: "cpu" (PIL in the loader workers) or "device" (batched on the model's device,
    # nvJPEG on CUDA; other formats stay on the CPU path). Part of the cache key: resampling rounding differs.
    decode: Literal["cpu", "device"] = field(default="cpu", kw_only=True)
    # Split the image set into this many equal shards, each decomposed apart (:func:`decompose_shard`, by any
    # worker) and merged in shard order; > 1 replaces ``shard_size`` and is part of the cache key.
    shards: int = field(default=1, kw_only=True)

    def __post_init__(self):
        if self.keep not in KEEP_MODES:
            raise UserError(f"unknown keep mode {self.keep!r}: use one of {', '.join(KEEP_MODES)}")
        if self.decode not in ("cpu", "device"):
            raise UserError(f"unknown decode {self.decode!r}: use cpu or device")
        if self.shards < 1:
            raise UserError(f"shards={self.shards}: use 1 (one pass) or more")

    def for_images(self, n_images: int) -> DecomposeConfig:
        """The config with the shard size a sharded decomposition of ``n_images`` uses (unchanged when unsharded)."""
        if self.shards == 1:
            return self
        return dataclasses.replace(self, shard_size=max(1, -(-n_images // self.shards)))


KEEP_MODES = ("heads", "heads_fp16", "moments")


@dataclass(frozen=True)
class DecompositionArtifact:
    """A decomposed image set on disk: shards of heads [n, L, H, E], rest [n, E], embedding [n, E], ids."""

    path: Path
    manifest: dict[str, Any]

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(self.manifest["layers"])

    @property
    def n_images(self) -> int:
        return int(self.manifest["n_images"])

    @property
    def shard_names(self) -> list[str]:
        return list(self.manifest["shards"])

    @property
    def keep(self) -> str:
        return self.manifest.get("keep", "heads")

    def load_shard(self, name: str, mmap: bool = True) -> dict[str, np.ndarray]:
        """heads [n, L, H, E] (absent when only moments were kept), rest [n, E], embedding [n, E]."""
        mode = "r" if mmap else None
        parts = ("rest", "embedding") if self.keep == "moments" else ("heads", "rest", "embedding")
        return {part: np.load(self.path / f"{part}-{name}.npy", mmap_mode=mode) for part in parts}

    def ids(self) -> list[str]:
        out: list[str] = []
        for name in self.shard_names:
            out.extend((self.path / f"ids-{name}.txt").read_text(encoding="utf-8").splitlines())
        return out

    def iter_heads(self):
        """Yield heads [n, L, H, E] (memory-mapped) shard by shard: memory stays flat in N."""
        if self.keep == "moments":
            raise UserError(f"{self.path} keeps only TextSpan's moments, not each image's heads: decompose again with keep='heads'")
        for name in self.shard_names:
            yield self.load_shard(name)["heads"]

    def head(self, layer: int, head: int) -> np.ndarray:
        """One head's contributions over all images: [N, E] (loads only that slice)."""
        li = self.layers.index(layer)
        return np.concatenate([h[:, li, head] for h in self.iter_heads()], axis=0)


def _refuse_skipped(skipped: Sequence[dict]) -> None:
    """``on_bad_image="error"`` over work that skipped files: stop at the first, as a fresh run would.

    (The policy is kept out of the cache key on purpose: when no file is bad both policies give the same
    arrays, so artifacts cached before stay valid.)"""
    if skipped:
        first = skipped[0]
        raise UserError(
            f"unreadable image {first.get('id')} ({first.get('error')}; {len(skipped)} skipped in all by an earlier "
            "--on-bad-image skip run): fix or remove it, or pass --on-bad-image skip to skip unreadable files"
        )


def decomposition_key(loaded: LoadedModel, image_set: ImageSet, layers: tuple[int, ...], config: DecomposeConfig | None = None) -> dict[str, Any]:
    kept: dict[str, Any] = {}  # absent for the defaults, so artifacts cached before stay valid
    if config is not None and config.shards > 1:
        kept["shards"] = config.shards
    if config is not None and config.decode != "cpu":
        kept["decode"] = config.decode
    if config is not None and config.keep != "heads":
        kept["keep"] = config.keep
        if config.keep == "moments":
            kept["moment_buckets"], kept["moment_seed"] = config.moment_buckets, config.moment_seed
    return {
        **kept,
        "version": DECOMPOSE_VERSION,
        "model": loaded.key,
        "weights": loaded.weights_hash,
        "images": image_set.fingerprint,
        "n_images": len(image_set),
        "layers": list(layers),
        "preprocess": repr(loaded.preprocess),
        "precision": loaded.precision,
    }


def decompose_image_set(
    loaded: LoadedModel,
    image_set: ImageSet,
    store: ArtifactStore,
    config: DecomposeConfig = DecomposeConfig(),
    *,
    stats: LoaderStats | None = None,
) -> DecompositionArtifact:
    """Decompose every image of ``image_set`` into a sharded artifact (reused when it already exists).

    Shards are written atomically as they finish; an interrupted run resumes from the last finished shard.
    Unreadable images are skipped and listed in the manifest (or abort, with ``on_bad_image="error"``).
    ``stats``: filled with where the time went (loader waits, time to the first batch).
    """
    _check_supported(loaded)
    layers = resolve_layers(config.layers, loaded.num_layers)
    key_parts = decomposition_key(loaded, image_set, layers, config)
    key = content_key(key_parts)
    found = store.find("decompose", key)
    if found is not None:
        manifest = read_json(found / "manifest.json")
        if config.on_bad_image == "error":  # the policy is not in the key: a skip run's artifact must not pass
            _refuse_skipped(manifest.get("skipped", []))
        log.info("decomposition of %s on %s reused from %s", image_set.name, loaded.key, found)
        return DecompositionArtifact(found, manifest)

    work = store.begin("decompose", key)
    if config.shards > 1:
        return _decompose_sharded(loaded, image_set, store, config, key, key_parts, work, stats)
    progress_path = work / "progress.json"
    progress = read_json(progress_path) if progress_path.is_file() else {}
    # A moments-only run keeps its running moments in memory: an interrupted one starts again.
    if progress.get("shard_size") != config.shard_size or config.keep == "moments":
        progress = {"shard_size": config.shard_size, "shards": [], "skipped": [], "n_images": 0}
    if config.on_bad_image == "error":  # resuming the shards of an interrupted skip run
        _refuse_skipped(progress["skipped"])
    from ccs_dist.decompose_stream import stream_decomposition

    moment_part = stream_decomposition(loaded, image_set, layers, config, work, progress, stats=stats)
    progress_path.unlink()
    return _commit(loaded, image_set, store, config, key, key_parts, progress, moment_part)


def _commit(loaded, image_set, store, config, key, key_parts, progress, moment_part) -> DecompositionArtifact:
    if progress["n_images"] == 0:
        raise UserError(f"no readable image in {image_set.name}: every file failed to load (see the warnings above)")
    if progress["skipped"]:
        log.warning("%d unreadable image(s) skipped; listed in the manifest", len(progress["skipped"]))
    manifest = {
        **key_parts,
        "model_metadata": loaded.metadata(),
        "image_set": image_set.name,
        "num_heads": loaded.num_heads,
        "embed_dim": loaded.embed_dim,
        "n_images": progress["n_images"],
        "skipped": progress["skipped"],
        "shards": [s for s in progress["shards"] if s is not None],
        "keep": config.keep,
        **moment_part,
    }
    final = store.commit("decompose", key, manifest)
    log.info("decomposed %d images of %s into %s", manifest["n_images"], image_set.name, final)
    return DecompositionArtifact(final, manifest)


# --------------------------------------------------------------------------------------------------------
# A sharded decomposition: shards decomposed apart (in any order, by any worker sharing the store), merged


def _shard_record_path(work: Path, index: int) -> Path:
    return work / f"shard-{index:05d}.json"


def decompose_shard(
    loaded: LoadedModel, image_set: ImageSet, store: ArtifactStore, config: DecomposeConfig, index: int
) -> dict[str, Any]:
    """Decompose shard ``index`` of a sharded decomposition (``config.shards > 1``) into the artifact's work
    folder, unless it is there already or the artifact is complete. -> the shard's record (its images,
    skipped files, moments counts). Workers on several machines may run the shards of one artifact when the
    store is on storage they all see; :func:`decompose_image_set` merges them."""
    if config.shards < 2 or not 0 <= index < config.shards:
        raise UserError(f"shard {index} of a decomposition into {config.shards} shards: use 0..{config.shards - 1} with shards > 1")
    _check_supported(loaded)
    layers = resolve_layers(config.layers, loaded.num_layers)
    config = config.for_images(len(image_set))
    key = content_key(decomposition_key(loaded, image_set, layers, config))
    if store.exists("decompose", key):
        return {"index": index, "reused": "artifact"}
    if index * config.shard_size >= len(image_set):  # fewer images than shards: this one is empty
        return {"index": index, "n_images": 0, "reused": "empty"}
    work = store.begin("decompose", key)
    record = _shard(loaded, image_set, layers, config, work, index)
    store.publish_partial("decompose", key, _is_shard_record)  # a remote root: the worker merging them takes it from there
    return record


def _is_shard_record(name: str) -> bool:
    return name.startswith("shard-") and name.endswith(".json")


def _shard(loaded, image_set, layers, config, work: Path, index: int, stats: LoaderStats | None = None) -> dict[str, Any]:
    record_path = _shard_record_path(work, index)
    if record_path.is_file():
        return {**read_json(record_path), "reused": "shard"}
    from ccs_dist.decompose_stream import stream_decomposition
    from ccs_dist.store import atomic_write_json

    progress = {"shard_size": config.shard_size, "shards": [], "skipped": [], "n_images": 0}
    moment_part = stream_decomposition(loaded, image_set, layers, config, work, progress, stats=stats, only_shard=index)
    record = {"index": index, "name": progress["shards"][0] if progress["shards"] else None, "n_images": progress["n_images"],
              "skipped": progress["skipped"], **moment_part}
    atomic_write_json(record_path, record)  # last: the shard counts as done only once everything is written
    (work / f"progress-{index:05d}.json").unlink(missing_ok=True)
    return record


def _decompose_sharded(loaded, image_set, store, config, key, key_parts, work: Path, stats) -> DecompositionArtifact:
    """Every shard not yet in ``work`` decomposed here, in order; then all merged in shard order."""
    layers = tuple(key_parts["layers"])
    config = config.for_images(len(image_set))
    n_shards = -(-len(image_set) // config.shard_size)
    store.fetch_partial("decompose", key, _is_shard_record)  # shards other nodes published to a remote root
    records = [_shard(loaded, image_set, layers, config, work, i, stats) for i in range(n_shards)]
    if config.on_bad_image == "error":
        _refuse_skipped([s for r in records for s in r["skipped"]])
    progress = {"shards": [r["name"] for r in records], "skipped": [s for r in records for s in r["skipped"]],
                "n_images": sum(r["n_images"] for r in records)}
    moment_part: dict[str, Any] = {}
    if config.keep == "moments":
        from ccs_dist.moments import merge_shard_moments

        moment_part = merge_shard_moments(work, [(f"{r['index']:05d}-", r["moment_counts"]) for r in records if r.get("moment_counts")])
    for i in range(n_shards):
        _shard_record_path(work, i).unlink()
    return _commit(loaded, image_set, store, config, key, key_parts, progress, moment_part)
