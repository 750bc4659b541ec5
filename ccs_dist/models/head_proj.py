"""Head-level access at an attention module's out-projection: the layer for towers ccs_dist does not rebuild.

timm's ``Attention`` / ``EvaAttention`` / ``AttentionPoolLatent`` and Hugging Face's ``CLIPAttention`` all end
in one ``Linear`` whose input is the H heads' outputs side by side (after any rotary embedding, q/k norm,
inner "scale" norm or gate the module applies). ``HeadProj`` replaces that Linear, holding the very same
``weight`` and ``bias`` Parameters (state_dict keys unchanged, the module's own forward untouched), and
exposes the heads at its input with the controls of :class:`~ccs_dist.models.head_attention.HeadControl`:

* ``capture_cls``: head ``h``'s write to position 0 (``capture.cls_BHD``; the bias not included),
* ``capture_inputs``: every head's output at every position (``capture.z_BHPK``, for towers without a
  class token, whose every position feeds the pooling),
* ``keep_BH`` with ``ablation`` zero / mean: zeroing head ``h`` here is exactly zeroing its slice
  ``weight[:, h*K:(h+1)*K]`` of the out-projection (bias kept),
* ``record_mean``: accumulate each head's mean output.

``capture_spatial`` needs the attention weights, which this layer does not see: it is refused.

Axis letters: :mod:`ccs_dist.core.axes` (one legend for the package).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ccs_dist.models.head_attention import STOCK, HeadAttention, HeadCapture, _accumulate_mean


class HeadProj(nn.Module):
    """Drop-in for the out-projection ``nn.Linear`` of a multi-head attention, with per-head access at its input."""

    # The control context and the ablation are HeadAttention's own (same fields, same checks).
    control = HeadAttention.control
    controlled = HeadAttention.controlled
    _ablate = HeadAttention._ablate

    def __init__(self, linear: nn.Linear, num_heads: int, name: str):
        super().__init__()
        if not isinstance(linear, nn.Linear) or linear.in_features % num_heads:
            raise TypeError(f"{name}: expected an nn.Linear with in_features divisible by {num_heads} heads")
        self.name = name
        self.num_heads = num_heads
        self.head_dim = linear.in_features // num_heads
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.embed_dim = linear.out_features  # D: the width the heads write into
        self.weight = linear.weight  # the same Parameters: keys stay ``...proj.weight`` / ``...proj.bias``
        self.bias = linear.bias
        self._control = STOCK
        self._capture = HeadCapture()

    @property
    def out_proj(self) -> HeadProj:
        """HeadAttention's name for the out-projection (``weight``, ``bias``): this module itself."""
        return self

    def extra_repr(self) -> str:
        return f"{self.name}: in={self.in_features}, out={self.out_features}, num_heads={self.num_heads}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        control, capture = self._control, self._capture
        if control.capture_spatial:
            raise NotImplementedError(f"{self.name}: per-position CLS writes need the attention weights (not seen here)")
        lead, H, K = x.shape[:-1], self.num_heads, self.head_dim
        x_BPC = x.reshape(-1 if x.dim() == 2 else x.shape[0], 1 if x.dim() == 2 else x.shape[-2], H * K)
        B, P = x_BPC.shape[:2]
        z_BHPK = x_BPC.view(B, P, H, K).transpose(1, 2)
        if control.record_mean:
            _accumulate_mean(capture, z_BHPK)
        if control.keep_BH is not None:
            z_BHPK = self._ablate(z_BHPK, control)
        if control.capture_cls:
            w_DHK = self.weight.view(self.out_features, H, K).to(z_BHPK.dtype)
            capture.cls_BHD = torch.einsum("bhk,dhk->bhd", z_BHPK[:, :, 0], w_DHK)
        if control.capture_inputs:
            capture.z_BHPK = z_BHPK.detach().clone()
        out = F.linear(z_BHPK.transpose(1, 2).reshape(B, P, H * K), self.weight, self.bias)
        return out.reshape(*lead, self.out_features)


def install_head_proj(attn: nn.Module, attr: str, num_heads: int, name: str) -> HeadProj:
    """Replace ``attn.<attr>`` (an out-projection Linear) by a :class:`HeadProj`; idempotent."""
    proj = getattr(attn, attr)
    if not isinstance(proj, HeadProj):
        proj = HeadProj(proj, num_heads, name)
        setattr(attn, attr, proj)
    return proj
