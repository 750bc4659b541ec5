"""Direct contribution of every attention head to the image embedding (Gandelsman et al.).

The CLS residual before ``ln_post`` is a sum of 2L+1 writes: the ``ln_pre`` output, L attention layers and
L MLPs. With the per-image mean ``mu`` and std ``sigma`` of that residual fixed, ``ln_post`` is affine, so a
write ``c`` with share ``s`` of the mean and bias maps to the joint space as
``((c - mu * s) * gamma / sigma + beta * s) @ proj``. Shares follow the reference code: every residual write
has ``1/(2L+1)``, an attention layer's share is split equally over its H heads, and so is its out-projection
bias (a head's term is its CLS write plus ``bias/H``). All terms sum to ``encode_image``.

Towers described by :class:`~ccs_dist.models.towers.Tower` (timm SigLIP / EVA-02 through open_clip, Hugging
Face CLIP) take :func:`decompose_tower`, the same convention on their own module layout: the final norm
linearised at the pooled residual; any Linear after the pooling (EVA's head, HF's ``visual_projection``)
applied to every term with its bias shared like ``beta``. A tower pooled by timm's ``AttentionPoolLatent``
(SigLIP) has no class token: every position's writes reach the embedding through the pooling's values, so
with its attention weights and the per-position norm statistics held at their per-image values the pooling
is affine in the trunk's writes, and each trunk head is carried through it (its write at every position; the
norm's ``beta``, the pooling's position embedding and value / out-projection biases shared like ``beta``);
the pooling's MLP (``x + mlp(norm(x))``) is not linear and stays one term of ``rest``. The pooling's own
units, its H heads (``pool_head``: that head's slice of the pooling's out-projection plus 1/H of its bias) and
its MLP (``pool_mlp``), are returned as ``Decomposition.pool``: they sum to the embedding on their own.

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
from ccs_dist.models.towers import pool_attention


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
    # The kind of unit each row is: ``unit_kind[i][h]`` for head h of ``layers[i]`` ("head": a trunk head) and
    # ``pool_kind[u]`` for row u of ``pool`` ("pool_head" per pooling head, then "pool_mlp"). ``pool``: [B, U, E]
    # the attention-pooling units (SigLIP), summing to ``embedding`` on their own; None for class-token towers.
    unit_kind: tuple[tuple[str, ...], ...] = ()
    pool: torch.Tensor | None = None
    pool_kind: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.unit_kind:
            object.__setattr__(self, "unit_kind", tuple(("head",) * self.heads.shape[2] for _ in self.layers))


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
    if loaded.tower is not None:  # checked when its Tower was built (models.towers)
        return
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
    if loaded.tower is not None:
        return decompose_tower(loaded, images, layers, spatial_heads)
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


UNIT_KINDS = ("head", "pool_head", "pool_mlp")


def pool_unit_kinds(loaded: LoadedModel) -> tuple[str, ...]:
    """The kinds of ``Decomposition.pool``'s rows for this model: its pooling heads then its MLP (SigLIP), or ()."""
    tower = loaded.tower
    if tower is None or tower.pool != "map":
        return ()
    return ("pool_head",) * tower.pool_heads.num_heads + ("pool_mlp",)


class _TowerAffine:
    """A tower's final LayerNorm linearised at ``resid_BD`` (per row), then its post-pooling Linear maps."""

    def __init__(self, norm: torch.nn.LayerNorm, resid_BD: torch.Tensor, post: Sequence[torch.nn.Linear]):
        r = resid_BD.float()
        self.mu = r.mean(-1, keepdim=True)
        self.sigma = (r.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()
        d = r.shape[-1]
        self.gamma_D = norm.weight.float() if norm.weight is not None else torch.ones(d, device=r.device)
        self.beta_D = norm.bias.float() if norm.bias is not None else torch.zeros(d, device=r.device)
        self.post = post

    def normed(self, writes: torch.Tensor, share: float) -> torch.Tensor:
        """The norm's output for ``writes`` [B, ..., D] (rows aligned with ``resid_BD`` on the trailing axes)."""
        extra = writes.dim() - self.mu.dim()
        mu = self.mu.view(self.mu.shape[0], *([1] * extra), *self.mu.shape[1:])
        sigma = self.sigma.view(mu.shape)
        return (writes.float() - mu * share) * self.gamma_D / sigma + self.beta_D * share

    def __call__(self, writes: torch.Tensor, share: float) -> torch.Tensor:
        return post_maps(self.post, self.normed(writes, share), share)


def post_maps(post: Sequence[torch.nn.Linear], x: torch.Tensor, share: float) -> torch.Tensor:
    """The Linear maps after the pooling, each bias taken with ``share``."""
    for lin in post:
        x = x @ lin.weight.float().T + (lin.bias.float() * share if lin.bias is not None else 0.0)
    return x


class _PoolCarry:
    """timm's ``AttentionPoolLatent`` with its attention weights ``a_BHN`` held: affine in the trunk's writes.

    A trunk write ``c`` [B, ..., N, D] (at the N pooled positions) with share ``s`` maps to
    ``sum_h W_proj[:, h] (sum_n a_hn W_v,h (norm(c_n) + pe_n s) + b_v,h s) + b_proj s``, then the post maps.
    """

    def __init__(self, tower, final: _TowerAffine, a_BHN: torch.Tensor):
        ap = tower.attn_pool
        D = ap.kv.in_features
        self.H, self.K = ap.num_heads, ap.head_dim
        self.final, self.a_BHN, self.post = final, a_BHN, tower.post
        self.w_v_HKD = ap.kv.weight[D:].float().view(self.H, self.K, D)
        self.b_v_HK = ap.kv.bias[D:].float().view(self.H, self.K) if ap.kv.bias is not None else None
        self.pe_ND = ap.pos_embed.float() if ap.pos_embed is not None else None
        self.w_o_DHK = tower.pool_heads.weight.float().view(-1, self.H, self.K)
        self.b_o_D = tower.pool_heads.bias.float() if tower.pool_heads.bias is not None else None

    def __call__(self, writes: torch.Tensor, share: float) -> torch.Tensor:
        n = self.final.normed(writes, share)  # [B, ..., N, D]
        if self.pe_ND is not None:
            n = n + self.pe_ND * share
        lead = n.shape[:-2]
        n_BXND = n.reshape(n.shape[0], -1, *n.shape[-2:])  # X: the term's own axes (heads), folded
        m_BXHD = torch.einsum("bhn,bxnd->bxhd", self.a_BHN, n_BXND)  # the held attention: sum_n a_hn x_n
        v_BXHK = torch.einsum("bxhd,hkd->bxhk", m_BXHD, self.w_v_HKD)
        if self.b_v_HK is not None:
            v_BXHK = v_BXHK + self.b_v_HK * share  # sum_n a_hn = 1
        y_BXD = torch.einsum("bxhk,dhk->bxd", v_BXHK, self.w_o_DHK)
        if self.b_o_D is not None:
            y_BXD = y_BXD + self.b_o_D * share
        return post_maps(self.post, y_BXD.reshape(*lead, -1), share)


class _TowerRecorder:
    """Hooks recording one forward pass of a :class:`Tower` model: every residual write (at position 0 for
    class-token towers, at every position for attention pooling), the final norm's input and, for attention
    pooling, the pooling's input, per-head outputs and MLP output. Every hook must fire; keys are module paths."""

    def __init__(self, loaded: LoadedModel, layers: Sequence[int]):
        self.loaded, self.tower, self.layers = loaded, loaded.tower, tuple(layers)
        self.all_positions = self.tower.pool == "map"
        self.paths = {m: n for n, m in loaded.model.named_modules()}
        self.writes: dict[str, torch.Tensor] = {}
        self.captures: dict = {}
        self.pool_capture = None
        self._handles: list = []
        self._controls = contextlib.ExitStack()

    def _key(self, module, suffix: str = "") -> str:
        name = self.paths.get(module) or f"<detached {type(module).__name__} {id(module):x}>"
        return name + suffix

    def _store(self, key: str):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, tuple) else output
            out = out if self.all_positions or out.dim() == 2 else out[:, 0]
            self.writes[key] = out.detach().clone()
        return hook

    def expected(self) -> int:
        return 2 + 2 * self.tower.num_layers + (2 if self.tower.pool == "map" else 0)

    def __enter__(self) -> _TowerRecorder:
        t = self.tower
        hook = lambda m, key: self._handles.append(m.register_forward_hook(self._store(key)))  # noqa: E731
        hook(t.embed_write, self._key(t.embed_write))
        for layer in range(t.num_layers):
            hook(t.heads[layer], self._key(t.heads[layer]))
            hook(t.mlp_writes[layer], self._key(t.mlp_writes[layer]))

        def pre(key):
            def fn(_module, inputs):
                x = inputs[0]
                self.writes[key] = (x if self.all_positions or x.dim() == 2 else x[:, 0]).detach().clone()
            return fn
        self._handles.append(t.final_norm.register_forward_pre_hook(pre(self._key(t.final_norm, ":input"))))
        mode = {"capture_inputs": True} if self.all_positions else {"capture_cls": True}
        for layer in self.layers:
            self.captures[layer] = self._controls.enter_context(t.heads[layer].controlled(**mode))
        if t.pool == "map":
            self._handles.append(t.attn_pool.register_forward_pre_hook(pre(self._key(t.attn_pool, ":input"))))
            hook(t.attn_pool.mlp, self._key(t.attn_pool.mlp))
            self.pool_capture = self._controls.enter_context(t.pool_heads.controlled(capture_inputs=True))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._controls.close()
        if exc[0] is None and len(self.writes) != self.expected():
            raise RuntimeError(f"decomposition hooks fired {len(self.writes)} of {self.expected()} times")

    def attn_write(self, layer: int) -> torch.Tensor:
        w = self.writes[self._key(self.tower.heads[layer])].float()
        scale = self.tower.attn_scales[layer]
        return w * scale.float() if scale is not None else w

    def mlp_write(self, layer: int) -> torch.Tensor:
        w = self.writes[self._key(self.tower.mlp_writes[layer])].float()
        scale = self.tower.mlp_scales[layer]
        return w * scale.float() if scale is not None else w


def _cls_head_writes(tower, layer: int, cls_BHD: torch.Tensor) -> torch.Tensor:
    """Each head's CLS write with its 1/H of the out-projection bias and the layer scale: [B, H, D]."""
    proj = tower.heads[layer]
    c_BHD = cls_BHD.float() + (proj.bias.float() / proj.num_heads if proj.bias is not None else 0.0)
    scale = tower.attn_scales[layer]
    return c_BHD * scale.float() if scale is not None else c_BHD


def _head_writes(tower, layer: int, z_BHPK: torch.Tensor) -> torch.Tensor:
    """Each head's write at every position, its 1/H of the out-projection bias and the layer scale in: [B, H, P, D]."""
    proj = tower.heads[layer]
    w_DHK = proj.weight.float().view(-1, proj.num_heads, proj.head_dim)
    c_BHPD = torch.einsum("bhpk,dhk->bhpd", z_BHPK.float(), w_DHK)
    if proj.bias is not None:
        c_BHPD = c_BHPD + proj.bias.float() / proj.num_heads
    scale = tower.attn_scales[layer]
    return c_BHPD * scale.float() if scale is not None else c_BHPD


@torch.no_grad()
def decompose_tower(
    loaded: LoadedModel,
    images: torch.Tensor,
    layers: int | Sequence[int] = 4,
    spatial_heads: Sequence[tuple[int, int]] = (),
) -> Decomposition:
    """:func:`decompose` for a :class:`~ccs_dist.models.towers.Tower` model (see the module docstring)."""
    tower = loaded.tower
    if spatial_heads:
        raise UserError(f"{loaded.key}: per-position head terms (spatial_heads) are not supported for {tower.family} towers yet")
    chosen = resolve_layers(layers, loaded.num_layers)
    images = images.to(loaded.device)
    with _TowerRecorder(loaded, chosen) as rec:
        embedding_BE = forward.encode_image_tower(loaded, images)

    L, H = loaded.num_layers, loaded.num_heads
    n_terms = 2 * L + 1
    final_in = rec.writes[rec._key(tower.final_norm, ":input")]
    rest_write = rec.writes[rec._key(tower.embed_write)].float().clone()
    n_rest_terms = 1
    for layer in range(L):
        rest_write += rec.mlp_write(layer)
        n_rest_terms += 1
        if layer not in chosen:
            rest_write += rec.attn_write(layer)
            n_rest_terms += 1

    if tower.pool == "token":
        to_joint = _TowerAffine(tower.final_norm, final_in, tower.post)
        rest_BE = to_joint(rest_write, n_rest_terms / n_terms)
        head_terms = [to_joint(_cls_head_writes(tower, layer, rec.captures[layer].cls_BHD), 1.0 / (n_terms * H))
                      for layer in chosen]
        return Decomposition(heads=torch.stack(head_terms, dim=1), layers=chosen, rest=rest_BE, embedding=embedding_BE)

    # Attention pooling: positions pool_from: of the final stream feed the pooling.
    sl = slice(tower.pool_from, None)
    final = _TowerAffine(tower.final_norm, final_in[:, sl], tower.post)
    a_BHN = pool_attention(tower.attn_pool, rec.writes[rec._key(tower.attn_pool, ":input")].float())
    carry = _PoolCarry(tower, final, a_BHN)
    mlp_BE = post_maps(tower.post, rec.writes[rec._key(tower.attn_pool.mlp)].float()[:, 0], 0.0)  # biases counted once
    rest_BE = carry(rest_write[:, sl], n_rest_terms / n_terms) + mlp_BE
    head_terms = [carry(_head_writes(tower, layer, rec.captures[layer].z_BHPK)[:, :, sl], 1.0 / (n_terms * H))
                  for layer in chosen]

    # The pooling's own units: its heads (1/H of its out-projection bias each) and its MLP.
    pool = tower.pool_heads
    Hp = pool.num_heads
    z_BHK = rec.pool_capture.z_BHPK[:, :, 0].float()
    u_BHD = torch.einsum("bhk,dhk->bhd", z_BHK, pool.weight.float().view(-1, Hp, pool.head_dim))
    if pool.bias is not None:
        u_BHD = u_BHD + pool.bias.float() / Hp
    pool_BUE = torch.cat([post_maps(tower.post, u_BHD, 1.0 / Hp), mlp_BE[:, None]], dim=1)
    return Decomposition(
        heads=torch.stack(head_terms, dim=1), layers=chosen, rest=rest_BE, embedding=embedding_BE,
        pool=pool_BUE, pool_kind=pool_unit_kinds(loaded),
    )
