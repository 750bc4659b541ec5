"""Direct contribution of every attention head to the image embedding (Gandelsman et al.).

The CLS residual before ``ln_post`` is a sum of 2L+1 writes: the ``ln_pre`` output, L attention layers and
L MLPs. With the per-image mean ``mu`` and std ``sigma`` of that residual fixed, ``ln_post`` is affine, so a
write ``c`` with share ``s`` of the mean and bias maps to the joint space as
``((c - mu * s) * gamma / sigma + beta * s) @ proj``. Shares follow the reference code: every residual write
has ``1/(2L+1)``, an attention layer's share is split equally over its H heads, and so is its out-projection
bias (a head's term is its CLS write plus ``bias/H``). All terms sum to ``encode_image``.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ccs_dist.core.errors import UserError
from ccs_dist.core.heads import head_name, resolve_layers
from ccs_dist.models import forward
from ccs_dist.models.loading import LoadedModel


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


def check_supported(loaded: LoadedModel) -> None:
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
    check_supported(loaded)
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
