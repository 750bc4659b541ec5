"""Planted concepts: which heads of ``ccs-toy`` are trained to carry one toy factor, and the loss that plants them.

A contrastive loss alone lets every head carry a mix of factors (in ``planted_v1``, trained without this
module, half the heads had a probe factor explaining only 24-42 % of their variance), so nothing in the
model said which head should encode what, and a head's TextSpan lines named two factors. Phase 1 of training therefore adds, for each head of
:data:`PLANTED` (every factor on >= 2 heads, spread over the layers), a loss on the head's *direct
contribution* exactly as the decomposition defines it (:func:`ccs_dist.decomposition.kernel.head_term`: the CLS
write through the linearised ``ln_post`` and ``proj``, divided by the embedding's norm as TextSpan and the
ground truth see it), computed on the training forward pass with gradients:

* carry: the head's centred contribution, cosine-matched against the centred text embeddings of its
  factor's single-factor captions ("a red object", ...), classifies the image's value of that factor
  (cross-entropy); its variation then points where the factor's own text points, which TextSpan reads;
* invariance: batches are groups of 4 scenes that differ in one factor only, so the head's variance
  within groups whose varied factor is another one, over that plus its variance within groups varying its
  own factor, is driven to 0 (scale-free: shrinking the head does not satisfy it);
* spanned by its factor's words: carry and invariance alone made every planted head's probe factor its
  planted one (selectivity 0.93-0.98 after 400 steps), yet a size head's variance pointed no closer to
  "small" or "large" than to "cross shape": for a binary factor the carry loss fixes only the difference of
  the two values' caption embeddings, not where the pool's own phrasings lie. So the share of the head's
  variance along each unit text embedding (``t' C t / tr C``, what a text explains of a head) is computed
  for the pool's phrasings of every toy value and for default-pool lines drawn per batch, and a softmax
  over them puts its mass on the head's own factor's phrasings. Its gradient reaches both towers, so the
  phrasings of a factor also move towards the directions its heads use; phase 2 keeps it on the text tower
  alone.

The last head of every layer (:data:`FREE_HEAD`) is left free: no auxiliary loss, whatever the contrastive
loss makes of it, so heads the method should find uninterpretable can exist. The assignment is what the
training aimed at, never the ground truth: the run measures each head's factors on held-out images
(:mod:`ccs_dist.toy.ground_truth`) and shows the planted factor beside the measured one.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ccs_dist.data.toy import world
from ccs_dist.data.toy.pool import toy_lines
from ccs_dist.decomposition.kernel import head_term, ln_post_affine
from ccs_dist.text.pool import default_pool

FREE_HEAD = 3
# (layer, head) -> factor. Layer 0 takes what one patch and its position show (colour, texture, position);
# shape and size, which need patches combined, start in layer 1; every factor has 2 or 3 heads.
PLANTED: Mapping[tuple[int, int], str] = {
    (0, 0): "colour", (0, 1): "texture", (0, 2): "position",
    (1, 0): "shape", (1, 1): "size", (1, 2): "colour",
    (2, 0): "position", (2, 1): "texture", (2, 2): "shape",
    (3, 0): "size", (3, 1): "colour", (3, 2): "shape",
}
CARRY_SCALE = 10.0  # inverse temperature of the carry loss's cosine logits
SPAN_SCALE = 30.0  # inverse temperature of the span loss's logits (variance fractions, in [0, 1])
SPAN_DISTRACTORS = 128  # default-pool lines per batch competing with the toy phrasings in the span loss


def planted_factor(layer: int, head: int) -> str | None:
    """The factor head (layer, head) of ``ccs-toy`` was trained to carry; None for a free head."""
    return PLANTED.get((int(layer), int(head)))


@dataclass(frozen=True)
class PlantedLoss:
    carry: torch.Tensor
    invariance: torch.Tensor
    span: torch.Tensor


@contextlib.contextmanager
def capture_head_terms(visual: torch.nn.Module, layers: tuple[int, ...]):
    """Within the block, record what :func:`head_terms` needs from one forward pass, gradients kept.

    Yields a callable: after the forward pass it returns {layer: contributions [B, H, E]}. The tower must
    have :class:`ccs_dist.models.head_attention.HeadAttention` installed.
    """

    resid: dict[str, torch.Tensor] = {}

    def pre_ln_post(_module, inputs):
        x = inputs[0]
        resid["cls"] = x[:, 0] if x.dim() == 3 else x

    handle = visual.ln_post.register_forward_pre_hook(pre_ln_post)
    with contextlib.ExitStack() as stack:
        captures = {l: stack.enter_context(visual.transformer.resblocks[l].attn.controlled(capture_cls=True)) for l in layers}
        try:
            def terms() -> dict[int, torch.Tensor]:
                to_joint = ln_post_affine(visual, resid["cls"].detach())  # the linearisation point is a constant, as in decompose
                return {l: head_term(visual, l, c.cls_BHD, to_joint) for l, c in captures.items()}
            yield terms
        finally:
            handle.remove()


@dataclass(frozen=True)
class SpanLines:
    """Unit text embeddings [T, E] of candidate span lines and the toy factor each phrases ("" for a distractor)."""

    text_TE: torch.Tensor
    factors: tuple[str, ...]


def span_line_texts(rng: np.random.Generator, distractors: int = SPAN_DISTRACTORS) -> tuple[list[str], tuple[str, ...]]:
    """The pool's phrasings of every toy value (tagged with their factor) and ``distractors`` default-pool lines."""

    toy = toy_lines()
    known = {t for t, _ in toy}
    pool = [t for t in default_pool().texts if t not in known]
    drawn = [pool[i] for i in rng.choice(len(pool), size=min(distractors, len(pool)), replace=False)]
    return [t for t, _ in toy] + drawn, tuple(f for _, f in toy) + ("",) * len(drawn)


def span_loss(x_BE: torch.Tensor, lines: SpanLines, factor: str) -> torch.Tensor:
    """-log of the softmax mass, over the lines, that falls on ``factor``'s phrasings; logits = the variance shares."""
    centred_BE = x_BE - x_BE.mean(0, keepdim=True)
    total = centred_BE.pow(2).sum(-1).mean().clamp_min(1e-20)
    share_T = (centred_BE @ lines.text_TE.T).pow(2).mean(0) / total
    own_T = torch.tensor([f == factor for f in lines.factors], device=share_T.device)
    logits_T = SPAN_SCALE * share_T
    return torch.logsumexp(logits_T, 0) - torch.logsumexp(logits_T[own_T], 0)


def planted_loss(terms: Mapping[int, torch.Tensor], embedding_BE: torch.Tensor, values_BF: torch.Tensor,
                 varied_B: torch.Tensor, factor_text: Callable[[str], torch.Tensor] | None, lines: SpanLines | None = None,
                 planted: Mapping[tuple[int, int], str] = PLANTED, group_size: int = 4) -> PlantedLoss:
    """Mean carry, invariance and span losses over the planted heads (see the module docstring).

    ``terms``: {layer: [B, H, E]} from :func:`capture_head_terms`; ``values_BF``: each image's factor values;
    ``varied_B``: the varied factor of each image's contrast group; ``factor_text(f)``: the unit text
    embeddings [V, E] of factor f's single-factor captions, in value order (None: span loss only);
    ``lines``: the span loss's candidates (None: no span loss).
    """
    scale_B1 = embedding_BE.detach().norm(dim=-1, keepdim=True)
    varied_G = varied_B.view(-1, group_size)[:, 0]
    carry, invariance, span = [], [], []
    for (layer, head), factor in planted.items():
        f = world.FACTOR_NAMES.index(factor)
        x_BE = terms[layer][:, head] / scale_B1
        if lines is not None:
            span.append(span_loss(x_BE, lines, factor))
        if factor_text is None:
            continue
        centred_BE = x_BE - x_BE.mean(0, keepdim=True)
        text_VE = factor_text(factor)
        text_VE = text_VE - text_VE.mean(0, keepdim=True)
        logits_BV = CARRY_SCALE * F.normalize(centred_BE, dim=-1) @ F.normalize(text_VE, dim=-1).T
        carry.append(F.cross_entropy(logits_BV, values_BF[:, f]))

        grouped = x_BE.view(-1, group_size, x_BE.shape[-1])
        within_G = (grouped - grouped.mean(1, keepdim=True)).pow(2).sum(-1).mean(1)
        own, other = varied_G == f, varied_G != f
        if own.any() and other.any():
            v_own, v_other = within_G[own].mean(), within_G[other].mean()
            invariance.append(v_other / (v_own + v_other + 1e-12))
    zero = embedding_BE.new_zeros(())
    return PlantedLoss(*(torch.stack(v).mean() if v else zero for v in (carry, invariance, span)))


def factor_text_embeddings(model, tokens: Callable[[list[str]], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Unit text embeddings [V, E] of every factor's single-factor captions (no gradient: targets only)."""
    prompts = [(f, world.single_factor_prompt(f, v)) for f in world.FACTOR_NAMES for v in world.FACTORS[f]]
    with torch.no_grad():
        text_TE = F.normalize(model.encode_text(tokens([p for _, p in prompts])), dim=-1)
    out, start = {}, 0
    for f in world.FACTOR_NAMES:
        k = len(world.FACTORS[f])
        out[f] = text_TE[start:start + k]
        start += k
    return out


def planted_table() -> list[dict]:
    """(layer, head, planted_factor) rows for every head of ``ccs-toy``, None for a free head."""
    layers = 1 + max(l for l, _ in PLANTED)
    heads = 1 + max(max(h for _, h in PLANTED), FREE_HEAD)
    return [{"layer": l, "head": h, "planted_factor": planted_factor(l, h)} for l in range(layers) for h in range(heads)]
