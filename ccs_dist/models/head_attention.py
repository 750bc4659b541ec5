"""A head-level self-attention module that replaces ``nn.MultiheadAttention`` in the image tower.

torch's ``nn.MultiheadAttention`` fuses all heads, so no hook can see one head's output. ``HeadAttention``
reuses the very same Parameter objects (``in_proj_weight``, ``in_proj_bias``, ``out_proj``), so
state_dict keys and checkpoints are unchanged, and computes the heads explicitly on fused
scaled-dot-product attention.

Everything it does beyond the stock module is switched on through one typed context,
``with module.controlled(...) as capture:`` (fields of :class:`HeadControl`), which restores the previous
control on exit. Within it the module can

* capture each head's write to the CLS token (``capture.cls_BHD``: head ``h``'s slice of the
  out-projection input at position 0, times that slice of the out-projection weight; the out-projection
  bias is not included),
* capture, for chosen heads A, the CLS write split over source positions (``capture.spatial_BAPD``),
* ablate heads per sample: ``keep_BH`` (1 keep, 0 ablate; a differentiable gate works too) zeroes a head's
  output at every token, or replaces it with the reference mean ``mean_HPK``; the out-projection bias kept,
* accumulate each head's mean output (``record_mean``; read with ``capture.mean_HPK()``).

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Ablation = Literal["zero", "mean"]


@dataclass(frozen=True)
class HeadControl:
    """What one ``HeadAttention`` does beyond the stock module during the forward passes of a context.

    capture_cls: capture each head's CLS write. capture_spatial: heads whose CLS write to split over positions.
    keep_BH: per-sample head mask or gate (None: no ablation). ablation: ``zero`` or ``mean`` (needs ``mean_HPK``).
    mean_HPK: reference mean of each head's output. record_mean: accumulate the mean of each head's output.
    """

    capture_cls: bool = False
    capture_spatial: tuple[int, ...] = ()
    keep_BH: torch.Tensor | None = field(default=None, compare=False)
    ablation: Ablation = "zero"
    mean_HPK: torch.Tensor | None = field(default=None, compare=False)
    record_mean: bool = False
    capture_inputs: bool = False  # HeadProj only: every head's output at every position (``capture.z_BHPK``)


STOCK = HeadControl()
_CAPTURE_FIELDS = {"capture_cls", "capture_spatial", "record_mean", "capture_inputs"}


@dataclass(eq=False)
class HeadCapture:
    """What a context captured: the last forward's CLS writes and the running mean of the outputs."""

    cls_BHD: torch.Tensor | None = None
    spatial_BAPD: torch.Tensor | None = None
    z_BHPK: torch.Tensor | None = None
    _mean_sum_HPK: torch.Tensor | None = None
    _mean_count: int = 0

    def mean_HPK(self) -> torch.Tensor:
        """Mean of the head's outputs over every sample seen while ``record_mean`` was on: [H, P, K]."""
        if self._mean_sum_HPK is None:
            raise ValueError("no samples recorded")
        return self._mean_sum_HPK / self._mean_count


class HeadAttention(nn.Module):
    """Drop-in for a self-attention ``nn.MultiheadAttention`` (packed in-projection) with per-head access."""

    def __init__(self, mha: nn.MultiheadAttention, name: str):
        super().__init__()
        if not getattr(mha, "_qkv_same_embed_dim", True) or mha.in_proj_weight is None:
            raise TypeError(f"{name}: only packed q/k/v in-projections are supported")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise TypeError(f"{name}: bias_k/bias_v/add_zero_attn are not supported")
        self.name = name
        self.embed_dim = mha.embed_dim
        self.num_heads = mha.num_heads
        self.head_dim = mha.head_dim
        self.batch_first = mha.batch_first
        self.dropout = mha.dropout
        # The same Parameter objects and Linear module: state_dict keys stay ``attn.in_proj_weight`` etc.
        self.in_proj_weight = mha.in_proj_weight
        self.in_proj_bias = mha.in_proj_bias
        self.out_proj = mha.out_proj
        # Set only by ``controlled``, which restores both on exit.
        self._control = STOCK
        self._capture = HeadCapture()

    def extra_repr(self) -> str:
        return f"{self.name}: embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"

    @property
    def control(self) -> HeadControl:
        """The control in force (``STOCK`` outside every context)."""
        return self._control

    @contextlib.contextmanager
    def controlled(self, **changes) -> Iterator[HeadCapture]:
        """Change some fields of the control (see :class:`HeadControl`) for the duration of the block.

        Fields not named are kept from the enclosing context. A context that names a capture field
        (``capture_cls``, ``capture_spatial``, ``record_mean``) yields a fresh :class:`HeadCapture`;
        otherwise it shares the enclosing one. On exit the previous control and capture are restored.
        """
        control = replace(self._control, **changes)
        if control.ablation not in ("zero", "mean"):
            raise ValueError(f"{self.name}: ablation must be 'zero' or 'mean', got {control.ablation!r}")
        if control.ablation == "mean" and control.keep_BH is not None and control.mean_HPK is None:
            raise ValueError(f"{self.name}: mean ablation needs reference means (masked.reference_means)")
        capture = HeadCapture() if _CAPTURE_FIELDS & changes.keys() else self._capture
        saved = self._control, self._capture
        self._control, self._capture = control, capture
        try:
            yield capture
        finally:
            self._control, self._capture = saved

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, None]:
        if need_weights:
            raise NotImplementedError(f"{self.name}: need_weights=True is not supported")
        if key_padding_mask is not None:
            raise NotImplementedError(f"{self.name}: key_padding_mask is not supported")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        B, P, D = query.shape
        H, K = self.num_heads, self.head_dim

        if query is key and key is value:
            qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
            q, k, v = qkv.view(B, P, 3, H, K).permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, P, K]
        else:
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
            b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None,) * 3
            q = F.linear(query, w_q, b_q).view(B, P, H, K).transpose(1, 2)
            k = F.linear(key, w_k, b_k).view(B, key.shape[1], H, K).transpose(1, 2)
            v = F.linear(value, w_v, b_v).view(B, value.shape[1], H, K).transpose(1, 2)

        mask = None
        if attn_mask is not None:
            mask = attn_mask if attn_mask.dtype == torch.bool else attn_mask.to(q.dtype)
            mask = ~mask if mask.dtype == torch.bool else mask  # MHA: True = masked out; SDPA: True = keep
        dropout_p = self.dropout if self.training else 0.0
        z_BHPK = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)

        control, capture = self._control, self._capture
        if control.record_mean:
            _accumulate_mean(capture, z_BHPK)
        if control.keep_BH is not None:
            z_BHPK = self._ablate(z_BHPK, control)

        w_out_DHK = self.out_proj.weight.view(D, H, K)
        if control.capture_cls:
            capture.cls_BHD = torch.einsum("bhk,dhk->bhd", z_BHPK[:, :, 0], w_out_DHK.to(z_BHPK.dtype))
        if control.capture_spatial:
            capture.spatial_BAPD = self._spatial_cls_writes(q, k, v, mask, w_out_DHK, control)

        out = F.linear(z_BHPK.transpose(1, 2).reshape(B, P, D), self.out_proj.weight, self.out_proj.bias)
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None

    def _ablate(self, z_BHPK: torch.Tensor, control: HeadControl) -> torch.Tensor:
        keep_BH11 = control.keep_BH.to(z_BHPK.dtype)[:, :, None, None]
        if keep_BH11.shape[0] != z_BHPK.shape[0] or keep_BH11.shape[1] != self.num_heads:
            raise ValueError(
                f"{self.name}: head mask has shape {tuple(control.keep_BH.shape)}, "
                f"expected [{z_BHPK.shape[0]}, {self.num_heads}]"
            )
        if control.ablation == "zero":
            return z_BHPK * keep_BH11
        mean_HPK = control.mean_HPK[:, : z_BHPK.shape[2]]  # a CLS-only query covers position 0 alone
        return z_BHPK * keep_BH11 + (1 - keep_BH11) * mean_HPK.to(z_BHPK.dtype)[None]

    def _spatial_cls_writes(self, q, k, v, mask, w_out_DHK, control: HeadControl) -> torch.Tensor:
        """CLS write of each chosen head split over source positions: [B, A, P, D], summing over P to cls_BHD."""
        idx = list(control.capture_spatial)
        q0_BA1K = q[:, idx, :1].float()
        k_BAPK, v_BAPK = k[:, idx].float(), v[:, idx].float()
        logits_BA1P = q0_BA1K @ k_BAPK.transpose(-1, -2) * (self.head_dim**-0.5)
        if mask is not None:
            row = mask[..., :1, :] if mask.dim() >= 2 else mask
            logits_BA1P = logits_BA1P.masked_fill(~row, float("-inf")) if row.dtype == torch.bool else logits_BA1P + row.float()
        attn_BAP = logits_BA1P.softmax(-1)[:, :, 0]
        if control.keep_BH is not None:
            attn_BAP = attn_BAP * control.keep_BH[:, idx, None].float()
        contrib_BAPK = attn_BAP[..., None] * v_BAPK
        return torch.einsum("bapk,dak->bapd", contrib_BAPK, w_out_DHK[:, idx].float())



def _accumulate_mean(capture: HeadCapture, z_BHPK: torch.Tensor) -> None:
    s = z_BHPK.detach().float().sum(0)
    capture._mean_sum_HPK = s if capture._mean_sum_HPK is None else capture._mean_sum_HPK + s
    capture._mean_count += z_BHPK.shape[0]


def install_head_attention(visual: nn.Module) -> list[HeadAttention]:
    """Replace every ``nn.MultiheadAttention`` of an open_clip ViT image tower; return them by layer.

    Idempotent: a tower that already has ``HeadAttention`` modules is returned as is.
    """
    blocks = visual.transformer.resblocks
    modules = []
    for layer, block in enumerate(blocks):
        attn = block.attn
        if not isinstance(attn, HeadAttention):
            if not isinstance(attn, nn.MultiheadAttention):
                raise TypeError(f"layer {layer}: unsupported attention module {type(attn).__name__}")
            attn = HeadAttention(attn, name=f"visual.transformer.resblocks.{layer}.attn")  # its module path
            block.attn = attn
        modules.append(attn)
    return modules
