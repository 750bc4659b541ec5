"""Train ``ccs-toy`` on the toy world: a CLIP contrastive loss whose positives are all consistent captions.

Each batch is made of contrast groups (scenes that differ in one factor only, the caption always naming
it), so no factor can be ignored. A caption that names few factors is true of many images in the batch:
the loss puts the probability mass of each caption on every image it is true of (and of each image on
every caption true of it) instead of on the diagonal only. The heads of :data:`ccs_dist.toy.planted.PLANTED`
also get the planted-concept loss (:mod:`ccs_dist.toy.planted`) on their direct contributions, so each
carries one known factor; the other heads are left to the contrastive loss.
A second phase trains the text tower alone on the same batches, single-factor captions also written as the
description pool phrases them ("red colour", "striped background"), plus ``null_captions`` captions true of no
image: 1-8 words drawn from the default pool's words that no toy caption uses
(:func:`ccs_dist.data.toy.pool.null_vocabulary`). They compete for the images' probability mass, and their own
softmax over the images is pulled to uniform (:func:`null_caption_loss`): such text tells no toy image
from another. Without them, text the tower never saw keeps random token embeddings and
lands in arbitrary directions of the joint space, where it outspans the toy descriptions in TextSpan.
The planted heads' span loss stays on in phase 2, for the text tower alone.
Deterministic on CPU in ``seed`` for a given thread count: training fixes torch's thread count and turns on
its deterministic algorithms, every image and caption comes from numpy generators seeded from ``seed``,
and the initialisation from ``torch.manual_seed(seed)``; ``ccs-dist train-toy`` with its defaults writes the
bundled ``planted_v2`` file byte for byte.

Axis letters: :mod:`ccs_dist.core.axes`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ccs_dist.data.toy import world
from ccs_dist.data.toy.pool import null_vocabulary
import hashlib
from ccs_dist.artifacts.store import atomic_write_bytes
from ccs_dist.data.toy.pool import phrasings
from ccs_dist.models.head_attention import install_head_attention
from ccs_dist.models.loading import _register_project_configs
from ccs_dist.toy.planted import PLANTED, SpanLines, capture_head_terms, factor_text_embeddings, planted_loss, span_line_texts
from ccs_dist.core.errors import UserError

log = logging.getLogger(__name__)

ARCH = "ccs-toy"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000  # the CLI's default too: the bundled weights are this config's output
    batch_size: int = 256
    group_size: int = 4
    lr: float = 1e-3
    warmup: int = 50
    weight_decay: float = 0.05
    mention_p: float = 0.4
    null_steps: int = 150  # phase 2: the text tower learns that text from outside the toy world fits no image
    null_captions: int = 256  # phase 2: captions per batch of words from outside the toy world, true of no image
    null_lr: float = 5e-4
    null_warmup: int = 10
    planted_carry: float = 1.0  # weight of the planted heads' carry loss (ccs_dist.toy.planted); 0: none
    planted_invariance: float = 1.0  # weight of their invariance loss
    planted_span: float = 1.0  # weight of their span loss (both phases)
    seed: int = 0
    threads: int = 2
    arch: str = ARCH


@dataclass(frozen=True)
class TrainResult:
    state_dict: dict[str, torch.Tensor]
    losses: list[float]
    seconds: float


def _image_tensor(images_NWW3: np.ndarray) -> torch.Tensor:
    """uint8 [N,S,S,3] -> normalised float [N,3,S,S], exactly what open_clip's preprocess gives for a 32 px PNG."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    x = torch.from_numpy(images_NWW3).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class _Tokens:
    """Tokenizer with a memo: the toy world has few distinct captions."""

    def __init__(self, tokenizer: Callable):
        self.tokenizer, self.memo = tokenizer, {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            for t, row in zip(missing, self.tokenizer(missing)):
                self.memo[t] = row
        return torch.stack([self.memo[t] for t in texts])


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # [B, 3, S, S]
    captions: list[str]  # [B]
    positives: torch.Tensor  # [B captions, B images] bool: caption t is true of image n
    values_BF: torch.Tensor  # each image's factor values
    varied_B: torch.Tensor  # the factor its contrast group varies


def make_batch(rng: np.random.Generator, config: TrainConfig) -> Batch:
    scenes, varied_B = world.sample_contrast_groups(rng, config.batch_size // config.group_size, config.group_size)
    always_BF = np.eye(len(world.FACTOR_NAMES), dtype=bool)[varied_B]
    mention_BF = world.sample_mentions(rng, len(scenes), always_BF, config.mention_p)
    captions = world.captions_for(scenes, mention_BF)
    positives = world.consistency(scenes.values_NF, mention_BF, scenes.values_NF)
    return Batch(_image_tensor(world.render(scenes, rng)), captions, torch.from_numpy(positives),
                 torch.from_numpy(scenes.values_NF), torch.from_numpy(varied_B))


def _rephrase_single_factor(rng: np.random.Generator, captions: list[str]) -> list[str]:
    """Each single-factor caption becomes, uniformly, itself or one of the pool's phrasings of its value."""

    single = {world.caption({f: v}): (f, v) for f, values in world.FACTORS.items() for v in values}
    out = []
    for c in captions:
        if c in single:
            forms = (c, *phrasings(*single[c]))
            c = forms[int(rng.integers(0, len(forms)))]
        out.append(c)
    return out


def null_captions(rng: np.random.Generator, n: int, vocabulary: tuple[str, ...]) -> list[str]:
    """``n`` captions of 1-8 words drawn uniformly from ``vocabulary``: text that describes no toy image."""
    lengths = rng.integers(1, 9, n)
    return [" ".join(vocabulary[i] for i in rng.integers(0, len(vocabulary), k)) for k in lengths]


def multi_positive_clip_loss(logits_TB: torch.Tensor, positives_TB: torch.Tensor) -> torch.Tensor:
    """-log of the softmax mass on consistent pairs, both directions; ``logits[t, n]`` = caption t vs image n.

    Captions with no consistent image (null captions) enter only the image-to-text softmax, as negatives.
    """
    neg_inf = torch.finfo(logits_TB.dtype).min
    has_image = positives_TB.any(1)
    lt, pt = logits_TB[has_image], positives_TB[has_image]
    text_to_image = torch.logsumexp(lt.masked_fill(~pt, neg_inf), 1) - torch.logsumexp(lt, 1)
    image_to_text = torch.logsumexp(logits_TB.masked_fill(~positives_TB, neg_inf), 0) - torch.logsumexp(logits_TB, 0)
    return -(text_to_image.mean() + image_to_text.mean()) / 2


def null_caption_loss(logits_TB: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of null captions' softmax over the B images against the uniform one, minus its floor log B.

    Zero when a null caption is equally similar to every image: text from outside the toy world tells no
    toy image from another, so no direction it takes carries the images' variance.
    """
    return (torch.logsumexp(logits_TB, 1) - logits_TB.mean(1)).mean() - math.log(logits_TB.shape[1])


def _cosine_lr(step: int, steps: int, warmup: int, lr: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * progress))


def _adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.98), eps=1e-6,
    )


def build_model(arch: str, seed: int):
    import open_clip


    _register_project_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    install_head_attention(model.visual)  # per-head CLS writes for the planted loss; state_dict keys unchanged
    return model, open_clip.get_tokenizer(arch)


def train(config: TrainConfig, log_every: int = 25, on_log: Callable[[int, float, float], None] | None = None) -> TrainResult:
    """Train from scratch, both phases; returns the fp32 state dict and the loss of every step.

    Runs with ``config.threads`` torch threads and deterministic algorithms (both restored on return): the
    thread count fixes how reductions are split, so the same config gives the same bits.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    try:
        model, tokenizer = build_model(config.arch, config.seed)
        start = time.perf_counter()
        losses = contrastive_phase(model, tokenizer, config, log_every, on_log)
        losses += null_caption_phase(model, tokenizer, config, log_every, on_log)
        model.eval()
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        return TrainResult(state, losses, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _planted_heads(model) -> dict[tuple[int, int], str]:
    """The heads of :data:`ccs_dist.toy.planted.PLANTED` this architecture has."""

    blocks = model.visual.transformer.resblocks
    return {k: f for k, f in PLANTED.items() if k[0] < len(blocks) and k[1] < blocks[k[0]].attn.num_heads}


def _span_lines(model, tokens: _Tokens, rng: np.random.Generator):
    """The span loss's candidates, embedded with gradients (text tower): toy phrasings + distractors from ``rng``."""

    texts, factors = span_line_texts(rng)
    return SpanLines(F.normalize(model.encode_text(tokens(texts)), dim=-1), factors)


def contrastive_phase(model, tokenizer, config: TrainConfig, log_every: int = 25,
                      on_log: Callable[[int, float, float], None] | None = None) -> list[float]:
    """Phase 1, ``config.steps`` steps: both towers on toy images and their captions only, plus the planted loss.

    The planted heads of :data:`ccs_dist.toy.planted.PLANTED` (those the architecture has) get its carry,
    invariance and span losses, weighted by ``config.planted_carry``, ``planted_invariance`` and ``planted_span``.
    """

    model.train()
    tokens = _Tokens(tokenizer)
    optimizer = _adamw(model, config.lr, config.weight_decay)
    rng = np.random.default_rng(config.seed)
    planted = _planted_heads(model)
    plant = bool(planted) and (config.planted_carry > 0 or config.planted_invariance > 0 or config.planted_span > 0)
    layers = tuple(sorted({l for l, _ in planted})) if plant else ()
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step, config.steps, config.warmup, config.lr)
        batch = make_batch(rng, config)
        with capture_head_terms(model.visual, layers) as head_terms:
            raw_BE = model.encode_image(batch.images)
            terms = head_terms() if plant else {}
        image_BE = F.normalize(raw_BE, dim=-1)
        text_TE = F.normalize(model.encode_text(tokens(batch.captions)), dim=-1)
        logits = model.logit_scale.exp() * text_TE @ image_BE.T
        loss = multi_positive_clip_loss(logits, batch.positives)
        if plant:
            targets = factor_text_embeddings(model, tokens)
            lines = _span_lines(model, tokens, rng) if config.planted_span > 0 else None
            aux = planted_loss(terms, raw_BE, batch.values_BF, batch.varied_B, targets.__getitem__, lines, planted,
                               config.group_size)
            loss = loss + (config.planted_carry * aux.carry + config.planted_invariance * aux.invariance
                           + config.planted_span * aux.span)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if on_log and (step % log_every == 0 or step == config.steps - 1):
            on_log(step, float(np.mean(losses[-log_every:])), time.perf_counter() - start)
    return losses


def null_caption_phase(model, tokenizer, config: TrainConfig, log_every: int = 25,
                       on_log: Callable[[int, float, float], None] | None = None) -> list[float]:
    """Phase 2, ``config.null_steps`` steps: the text tower alone, each batch with ``config.null_captions`` more.

    The image tower (and the logit scale) is frozen, so the heads' planted concepts stay exactly as phase 1
    left them; a fresh optimiser and generator (seeded ``[seed, 1]``) keep the phase reproducible on its own.
    """
    if not config.null_steps:
        return []

    model.train()
    for name, p in model.named_parameters():
        p.requires_grad_(not (name.startswith("visual.") or name == "logit_scale"))
    planted = _planted_heads(model)
    span = bool(planted) and config.planted_span > 0
    layers = tuple(sorted({l for l, _ in planted})) if span else ()
    tokens = _Tokens(tokenizer)
    optimizer = _adamw(model, config.null_lr, config.weight_decay)
    rng = np.random.default_rng([config.seed, 1])
    vocabulary = null_vocabulary()
    losses: list[float] = []
    start = time.perf_counter()
    for step in range(config.null_steps):
        for group in optimizer.param_groups:
            group["lr"] = _cosine_lr(step, config.null_steps, config.null_warmup, config.null_lr)
        batch = make_batch(rng, config)
        captions, positives = _rephrase_single_factor(rng, batch.captions), batch.positives
        with torch.no_grad(), capture_head_terms(model.visual, layers) as head_terms:
            raw_BE = model.encode_image(batch.images)
            terms = head_terms() if span else {}
        image_BE = F.normalize(raw_BE, dim=-1)
        text_tokens = torch.cat([tokens(captions), tokenizer(null_captions(rng, config.null_captions, vocabulary))])
        positives = torch.cat([positives, torch.zeros(config.null_captions, positives.shape[1], dtype=torch.bool)])
        text_TE = F.normalize(model.encode_text(text_tokens), dim=-1)
        logits = model.logit_scale.exp() * text_TE @ image_BE.T
        loss = multi_positive_clip_loss(logits, positives) + null_caption_loss(logits[-config.null_captions:])
        if span:
            lines = _span_lines(model, tokens, rng)
            aux = planted_loss(terms, raw_BE, batch.values_BF, batch.varied_B, None, lines, planted, config.group_size)
            loss = loss + config.planted_span * aux.span
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if on_log and (step % log_every == 0 or step == config.null_steps - 1):
            on_log(config.steps + step, float(np.mean(losses[-log_every:])), time.perf_counter() - start)
    for p in model.parameters():
        p.requires_grad_(True)
    return losses


def save_weights(state_dict: dict[str, torch.Tensor], path: Path) -> str:
    """Write a safetensors file atomically; returns its sha256."""

    from safetensors.torch import save as st_save


    data = st_save(state_dict, metadata={"arch": ARCH})
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def train_to_file(config: TrainConfig, path: Path) -> tuple[Path, str, float]:
    """Train and write the weights; logs progress. Returns (path, sha256, mean loss of the last 25 steps)."""
    path = Path(path)
    if path.suffix != ".safetensors":

        raise UserError(f"--out {path}: give a .safetensors file name")

    def report(step: int, loss: float, seconds: float) -> None:
        log.info("step %d/%d: loss %.4f (%.0f s)", step + 1, config.steps + config.null_steps, loss, seconds)

    result = train(config, log_every=50, on_log=report)
    digest = save_weights(result.state_dict, path)
    log.info("trained %s in %.0f s: %s", config.arch, result.seconds, path)
    return path, digest, float(np.mean(result.losses[-25:]))
