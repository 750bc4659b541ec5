"""Image towers beyond open_clip's own VisionTransformer: where each one writes its residual stream.

A :class:`Tower` names, for one image tower, the modules whose outputs are the residual writes (the
embeddings, each layer's attention and MLP, with the layer scale each write is multiplied by), the norm
that reads the final stream, how the stream is pooled (``token``: the class token; ``map``: timm's
``AttentionPoolLatent``) and the affine maps after the pooling. Heads are reached through
:class:`~ccs_dist.models.head_proj.HeadProj` at each attention's out-projection, so the towers run their own
forward (timm's fused ``qkv``, EVA's rotary embeddings and q/k / inner norms, Hugging Face's attention
backends) unchanged.

Families: ``timm-vit`` (timm ``VisionTransformer`` through open_clip's ``TimmModel``: SigLIP, SigLIP2),
``timm-eva`` (timm ``Eva``: EVA-02 CLIP), ``hf-clip`` (transformers ``CLIPModel``).

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ccs_dist.models.head_proj import HeadProj, install_head_proj

Pool = Literal["token", "map"]


@dataclass(eq=False)
class Tower:
    """Where a tower writes its residual stream. Writes are read at module outputs (forward hooks).

    ``embed_write``: its output [B, P, D] is the stream entering block 0.
    ``heads[l]``: layer ``l``'s out-projection; its output times ``attn_scales[l]`` is the attention write.
    ``mlp_writes[l]``: its output times ``mlp_scales[l]`` is the MLP write (a scale None: 1).
    ``final_norm``: the LayerNorm reading the final stream (all positions, or the pooled row for ``hf-clip``).
    ``pool``: ``token`` (position 0) or ``map`` (``attn_pool``, an ``AttentionPoolLatent`` over positions
    ``pool_from:``, its out-projection ``pool_heads``).
    ``post``: Linear maps applied after the pooling, in order (their biases included).
    """

    family: str
    heads: list[HeadProj]
    embed_write: nn.Module
    attn_scales: list[torch.Tensor | None]
    mlp_writes: list[nn.Module]
    mlp_scales: list[torch.Tensor | None]
    final_norm: nn.LayerNorm
    pool: Pool
    embed_dim: int
    post: list[nn.Linear] = field(default_factory=list)
    attn_pool: nn.Module | None = None
    pool_heads: HeadProj | None = None
    pool_from: int = 0

    @property
    def num_layers(self) -> int:
        return len(self.heads)


def _gamma(module: nn.Module | None) -> torch.Tensor | None:
    """timm's ``LayerScale`` gamma (None for Identity)."""
    return getattr(module, "gamma", None) if module is not None else None


def _linears(seq: nn.Module, what: str) -> list[nn.Linear]:
    """The Linear maps of an (inference-time) affine head: Linear, Identity, Dropout, or a Sequential of those."""
    mods = list(seq) if isinstance(seq, nn.Sequential) else [seq]
    out = []
    for m in mods:
        if isinstance(m, nn.Linear):
            out.append(m)
        elif not isinstance(m, (nn.Identity, nn.Dropout)):
            raise TypeError(f"{what}: {type(m).__name__} after the pooling is not affine")
    return out


def _check_layernorm(norm: nn.Module, what: str) -> nn.LayerNorm:
    if not isinstance(norm, nn.LayerNorm):
        raise TypeError(f"{what}: the final norm is {type(norm).__name__}, not a LayerNorm")
    return norm


def timm_tower(visual: nn.Module) -> Tower:
    """Describe an open_clip ``TimmModel`` with a timm ViT or EVA trunk and install its :class:`HeadProj`s."""
    from timm.layers import AttentionPoolLatent
    from timm.models.eva import Eva, EvaBlock
    from timm.models.vision_transformer import Block, VisionTransformer

    trunk = visual.trunk
    if isinstance(trunk, VisionTransformer):
        family, block_type = "timm-vit", Block
    elif isinstance(trunk, Eva):
        family, block_type = "timm-eva", EvaBlock
    else:
        raise TypeError(f"timm trunk {type(trunk).__name__} is not a VisionTransformer or Eva")
    heads, attn_scales, mlp_writes, mlp_scales = [], [], [], []
    for layer, block in enumerate(trunk.blocks):
        if type(block) is not block_type:  # post-norm / parallel blocks are not a sum of writes
            raise TypeError(f"layer {layer}: unsupported block {type(block).__name__} (expected {block_type.__name__})")
        name = f"visual.trunk.blocks.{layer}.attn.proj"
        heads.append(install_head_proj(block.attn, "proj", block.attn.num_heads, name))
        mlp_writes.append(block.mlp)
        if family == "timm-vit":
            attn_scales.append(_gamma(block.ls1))
            mlp_scales.append(_gamma(block.ls2))
        else:
            attn_scales.append(block.gamma_1)
            mlp_scales.append(block.gamma_2)
    if not isinstance(trunk.fc_norm, nn.Identity):
        raise TypeError(f"{family}: a norm after pooling (fc_norm, e.g. average pooling) is not supported")
    post = _linears(trunk.head, "trunk.head") + _linears(visual.head, "TimmModel.head")
    attn_pool = getattr(trunk, "attn_pool", None)
    tower = Tower(
        family=family, heads=heads, embed_write=trunk.norm_pre, attn_scales=attn_scales, mlp_writes=mlp_writes,
        mlp_scales=mlp_scales, final_norm=_check_layernorm(trunk.norm, family), pool="token",
        embed_dim=post[-1].out_features if post else trunk.num_features, post=post,
    )
    if attn_pool is None:
        if trunk.global_pool != "token" or not getattr(trunk, "num_prefix_tokens", 1):
            raise TypeError(f"{family}: pooling {trunk.global_pool!r} is not supported (class token or attention pooling)")
        return tower
    if type(attn_pool) is not AttentionPoolLatent or attn_pool.latent_len != 1 or attn_pool.pool != "token":
        raise TypeError(f"{family}: attention pooling {type(attn_pool).__name__} with one latent query is supported")
    tower.pool, tower.attn_pool = "map", attn_pool
    tower.pool_from = 0 if getattr(trunk, "pool_include_prefix", False) else trunk.num_prefix_tokens
    tower.pool_heads = install_head_proj(attn_pool, "proj", attn_pool.num_heads, "visual.trunk.attn_pool.proj")
    return tower


def pool_attention(attn_pool: nn.Module, x_BND: torch.Tensor) -> torch.Tensor:
    """``AttentionPoolLatent``'s attention weights [B, H, N] of its latent query over its input ``x_BND``."""
    B, N, D = x_BND.shape
    H, K = attn_pool.num_heads, attn_pool.head_dim
    if attn_pool.pos_embed is not None:
        x_BND = x_BND + attn_pool.pos_embed.unsqueeze(0).to(x_BND.dtype)
    q_BH1K = attn_pool.q(attn_pool.latent.expand(B, -1, -1)).reshape(B, 1, H, K).transpose(1, 2)
    k_BHNK = attn_pool.kv(x_BND)[..., :D].reshape(B, N, H, K).transpose(1, 2)
    q_BH1K, k_BHNK = attn_pool.q_norm(q_BH1K), attn_pool.k_norm(k_BHNK)
    return ((q_BH1K.float() @ k_BHNK.float().transpose(-1, -2)) * attn_pool.scale).softmax(-1)[:, :, 0]
